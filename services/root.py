"""The composition root: opens the store, the serving model, the pair sampler, the arena and the round runner,
once, and composes the use cases the UI and the CLI call.

    services = open_services(ServiceConfig(db="data/prefloop.duckdb"))    # what `python app.py` does
    services.labeling.next_pair(); services.rounds.start(DPOConfig()); services.status()
    services = open_services(config, serving=False, on_step=show_step)    # what `python -m training` does

Start-up happens here: interrupted rounds marked failed and their staging folders removed, starter prompts, the
recorded serving version restored, the sampler started. The use cases (services/labeling.py, versions.py,
rounds.py, arena.py, team.py, audit.py, exports.py) hold the policies the app and the CLI share; the parts they
are made of (`store`, `loop`, `battles`, `access`, `runner`) stay reachable for the tests and the CLI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from access import Access
from labeling.arena import Arena as Battles
from labeling.loop import Loop
from labeling.prompts import starter_prompts
from labeling.sampler import PairSampler
from models import default_device, resolve_model, resolve_quantization
from services.arena import Arena
from services.audit import Audit
from services.config import ServiceConfig
from services.exports import Exports
from services.labeling import Labeling
from services.rounds import Rounds, serve_finished
from services.team import Team
from services.versions import Versions
from serving import SamplingSettings, open_policy_server
from storage import Store
from training.runner import RoundPause, RoundRunner, claim_runs_folder, clean_leftovers


@dataclass(frozen=True)
class Status:
    """What the UI shows about serving: the version, the queue, the sampler's last error, and a notice (e.g. the
    recorded version's adapter did not load at start, so an earlier one serves)."""

    serving: str
    queued: int
    depth: int
    sampling_error: str | None
    notice: str | None = None
    eta_s: float | None = None  # about how long until a pair is ready (0: one is queued; None: not known yet)


class Services:
    """The use cases over one store, one round runner and (with a serving model) one labeling loop and arena."""

    def __init__(
        self,
        store: Store,
        runner: RoundRunner,
        model: str,
        device: str,
        exports_dir: Path,
        access: Access | None = None,
        loop: Loop | None = None,
        versions: Versions | None = None,
    ):
        # the parts
        self.store, self.runner, self.loop = store, runner, loop  # loop: None without a serving model (the CLI)
        self.access = access if access is not None else Access.open()  # logins off: everyone is admin
        self.model, self.device = model, device
        server, sampler = (None, None) if loop is None else (loop.server, loop.sampler)
        # the use cases (the arena's battles load versions through the same object that serves them, and the
        # runner's on_done hands finished rounds to it: open_services makes it first)
        self.versions = versions if versions is not None else Versions(store, server, sampler)
        self.battles = None if loop is None else Battles.for_loop(loop, self.versions)
        self.rounds = Rounds(runner, store, self.versions, device)
        self.labeling = None if loop is None else Labeling(store, loop, self.battles)
        self.arena = None if loop is None else Arena(store, loop, self.battles)
        self.team = Team(self.access)
        self.audit = Audit(store)
        self.exports = Exports(store, exports_dir)

    def status(self) -> Status:
        """What serves, how full the queue is, and what the UI should say about it."""
        if self.loop is None:
            return Status(self.store.rounds.get_serving(), 0, 0, None)
        sampler = self.loop.sampler
        return Status(
            self.versions.serving(),
            sampler.queued(),
            sampler.depth,
            sampler.last_error,
            self.versions.notice,
            sampler.eta_s(),
        )

    def close(self) -> None:
        self.runner.cancel()
        if self.loop is not None:  # a batch in flight ends at its next token instead of running to its end
            getattr(self.loop.server, "interrupt", lambda: None)()
        self.runner.wait(timeout=30)
        if self.battles is not None:
            self.battles.close()
        if self.loop is not None:
            self.loop.sampler.stop()
        self.store.close()
        if self.runner.claim is not None:
            self.runner.claim.close()


def open_services(
    config: ServiceConfig,
    serving: bool = True,
    on_step: Callable[[dict], None] | None = None,
    serve_rounds: bool = True,
) -> Services:
    """Open everything and run start-up; raises StoreError / ModelLoadError / ValueError with what to do.
    `on_step` hears each optimizer step's metrics of a running round; with `serve_rounds` off a finished round
    is only recorded (`python -m training --no-serve`), else `serve_finished` decides whether it serves."""
    # before the model loads
    access = Access.from_file(config.users, session_hours=config.session_hours) if config.users else Access.open()
    store = Store(config.db)
    claim = None
    try:
        claim = claim_runs_folder(Path(config.runs))  # before anything in it is cleaned up or written
        store.rounds.mark_interrupted()
        if store.prompts.count() == 0:
            store.prompts.add_many(starter_prompts(), source="starter")
        model = resolve_model(config.model, Path(config.model_cache))
        device = config.device or default_device()
        clean_leftovers(Path(config.runs))  # rounds that were running are marked failed above: nothing will finish them
        # Made in the order they need each other: the sampler pauses rounds, the runner hands finished ones to
        # the versions, which serve through the sampler's model.
        pause = RoundPause()
        loop = _open_loop(store, model, device, config, pause) if serving else None
        versions = Versions(store) if loop is None else Versions(store, loop.server, loop.sampler)
        runner = RoundRunner(
            store,
            model,
            Path(config.runs),
            on_done=functools.partial(serve_finished, store, versions) if serve_rounds else None,
            device=device,
            processes=config.round_processes,
            on_progress=on_step,
            pause=pause,
            claim=claim,
        )
        services = Services(store, runner, model, device, Path(config.exports), access, loop, versions)
        if loop is not None:
            services.versions.restore()
            loop.sampler.start()  # the arena samples only while someone is in it
    except BaseException:
        store.close()
        if claim is not None:
            claim.close()
        raise
    return services


def _open_loop(store: Store, model: str, device: str, config: ServiceConfig, pause: RoundPause) -> Loop:
    quantization = resolve_quantization(config.quantization, device)
    vllm_options = {"max_lora_rank": config.vllm_max_lora_rank, "gpu_memory_utilization": config.vllm_gpu_memory}
    server = open_policy_server(
        model,
        device,
        quantization,
        config.backend,
        config.candidates * config.sample_batch,  # rows in one batch: each prompt's candidates
        vllm_options,
        config.max_prompt_tokens,
        cache_dir=config.model_cache,
    )
    # On a CPU a round and the sampler share the cores: the round's process pauses while a batch samples.
    while_sampling = pause.paused if not device.startswith("cuda") else None
    sampler = PairSampler(
        store,
        server,
        depth=config.queue_depth,
        batch_prompts=config.sample_batch,
        keep_stale=config.keep_stale_pairs,
        while_sampling=while_sampling,
        selection=config.pair_selection(),
    )
    saved = store.settings.sampling()
    if saved:
        try:
            sampler.set_settings(SamplingSettings(**saved))
        except (TypeError, ValueError) as err:
            print(f"prefloop: the stored sampling settings {saved} are not usable ({err}); using the defaults.")
    return Loop(store, server, sampler)
