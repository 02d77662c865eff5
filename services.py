"""The composition root: opens the store, the serving model, the pair sampler, the arena and the round runner,
once.

    services = open_services(ServiceConfig(db="data/prefloop.duckdb"))    # what `python app.py` does
    services.loop.next_pair(); services.rounds.start(DPOConfig()); services.status()
    services = open_services(config, serving=False)                       # what `python -m training` does

It holds the policies the app and the CLI share: start-up (interrupted rounds marked failed and their
staging folders removed, starter prompts, the recorded serving version restored, the sampler started),
"a finished round serves" (the app hands the sampler over to it; without a serving model the store records it
for the next start; with review on it waits as the candidate until an admin serves it), and how exports are
named. The UI asks it questions (`status()`, `candidate()`) instead of reaching into the sampler or server.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from access import Access
from labeling.arena import Arena
from labeling.loop import Loop
from labeling.prompts import starter_prompts
from labeling.sampler import PairSampler
from models import DEFAULT_MODEL_CACHE, default_device, resolve_model, resolve_quantization
from serving import DEFAULT_MAX_PROMPT_TOKENS, SamplingSettings, open_policy_server
from storage import BASE_VERSION, Round, Store, StoreError
from storage.export import check_format
from training.gate import failed
from training.runner import RoundRunner, claim_runs_folder

EXPORT_KINDS = {  # kind: its rows, as a message and the export choice say
    "pairs": "pairs (prompt / chosen / rejected, for DPO)",
    "unpaired": "unpaired rows (prompt / completion / 👍-👎 label, for KTO)",
}
EXPORT_SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}  # hf: a datasets folder


@dataclass(frozen=True)
class ServiceConfig:
    """Where the data lives and how the model serves; `python app.py --help` documents each field."""

    db: str = "data/prefloop.duckdb"
    model: str | None = None  # None: the bundled SmolLM2-135M-Instruct
    model_cache: str = DEFAULT_MODEL_CACHE
    runs: str = "runs"
    exports: str = "exports"
    device: str | None = None
    quantization: str = "none"  # the serving model's weights; rounds pick NF4 on CUDA by themselves
    backend: str = "auto"
    vllm_max_lora_rank: int = 64
    vllm_gpu_memory: float = 0.3
    queue_depth: int = 16
    sample_batch: int = 8
    keep_stale_pairs: bool = False
    round_processes: int | None = None  # processes per round; None: one per GPU, else 1
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS  # longer prompts are refused when typed, cut when sampled
    users: str | None = None  # a users file (python -m access): logins on; None: no logins, everyone is admin
    session_hours: float = 12.0  # with logins, a session ends this long after its login

    def __post_init__(self) -> None:
        if self.queue_depth < 1 or self.sample_batch < 1:
            raise ValueError(f"queue_depth and sample_batch must be >= 1, got {self.queue_depth}, {self.sample_batch}")
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if not self.session_hours > 0:
            raise ValueError(f"session_hours must be > 0, got {self.session_hours}")
        if self.round_processes is not None and self.round_processes < 1:
            raise ValueError(f"round_processes must be >= 1, got {self.round_processes}")

    @classmethod
    def from_args(cls, args) -> ServiceConfig:
        """From an argparse namespace with (some of) these fields as attributes."""
        fields = cls.__dataclass_fields__
        return cls(**{name: getattr(args, name) for name in fields if hasattr(args, name)})


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


@dataclass
class Services:
    store: Store
    rounds: RoundRunner
    model: str
    device: str
    exports_dir: Path
    loop: Loop | None = None  # None without a serving model (the training CLI)
    arena: Arena | None = None  # blind battles between versions, beside the loop (None without it)
    access: Access = field(default_factory=Access.open)  # who may do what (logins off: everyone is admin)

    # -- questions the UI asks ------------------------------------------------------------------------
    def status(self) -> Status:
        if self.loop is None:
            return Status(self.store.rounds.get_serving(), 0, 0, None)
        sampler = self.loop.sampler
        return Status(
            self.loop.server.version,
            sampler.queued(),
            sampler.depth,
            sampler.last_error,
            self.loop.notice,
            sampler.eta_s(),
        )

    def set_sampling(self, settings: SamplingSettings) -> None:
        """New pairs sample with `settings`; queued pairs sampled otherwise are dropped (unless keep_stale).
        Arena battles sample with them too."""
        self.loop.sampler.set_settings(settings)
        if self.arena is not None:
            self.arena.sampler.set_settings(settings)
        kept = settings.to_dict()
        kept.pop("seed")
        self.store.settings.set_sampling(kept)  # the next start samples with them too

    def sampling(self) -> SamplingSettings:
        """The settings new pairs sample with."""
        return self.loop.sampler.settings

    def training_mode(self) -> str:
        """How rounds train on this device, in words."""
        return "QLoRA: 4-bit NF4 base + LoRA" if resolve_quantization("auto", self.device) == "nf4" else "plain LoRA"

    # -- policies the app and the CLI share -----------------------------------------------------------
    def round_finished(self, finished: Round) -> str:
        """A finished round serves: handed over live when a model serves, else recorded for the next start. With
        review on (`set_review`), or when it failed the health gate (training/gate.py), it waits as the candidate
        until someone serves it. Returns what happened."""
        reasons = failed(finished.metrics)
        if reasons:
            self.store.rounds.set_candidate(finished.version)
            return (
                f"{finished.version} failed the health check and was not served; the previous version keeps "
                f"serving. Failed: {'; '.join(reasons)}. Compare it first; an admin can still serve it on purpose "
                "(recorded)."
            )
        if self.store.settings.review():
            self.store.rounds.set_candidate(finished.version)
            return f"{finished.version} is ready for review; the previous version keeps serving."
        self._serve(finished.version)
        return f"{finished.version} is now serving."

    def serve(self, version: str, who: str) -> list[str]:
        """Serve `version` (base or a done round) on someone's say-so; serving a round that failed the health gate
        is recorded with who served it and when. Returns the checks it had failed ([] when none)."""
        found = self._round(version) if version != BASE_VERSION else None
        reasons = failed(found.metrics) if found is not None else []
        if reasons:
            self.store.rounds.record_served_anyway(found.id, who)
        self._serve(version)
        return reasons

    def _serve(self, version: str) -> None:
        if self.loop is not None:
            self.loop.serve(version)
        else:
            self.store.rounds.set_serving(version)

    def _round(self, version: str) -> Round:
        found = {r.version: r for r in self.store.rounds.list()}.get(version)
        if found is None:
            raise StoreError(f"No round {version!r}; pick base or a finished round from the list.")
        return found

    def set_review(self, on: bool) -> None:
        """Review each round before it serves (on), or serve each as it finishes (off, the default); kept in the
        store, so it holds after a restart."""
        self.store.settings.set_review(on)

    def candidate(self) -> str | None:
        """The finished round awaiting review, unless it serves already; None when there is none."""
        candidate = self.store.rounds.get_candidate()
        return None if candidate in (None, self.status().serving) else candidate

    def export(self, kind: str, fmt: str, include_arena: bool = False) -> tuple[Path, int]:
        """Write every label of `kind` (pairs / unpaired) as `fmt` into the exports folder, named by kind and
        time; a datasets folder (hf) comes zipped. include_arena: decisive arena votes too, each row marked by
        its `source` (see `store.training_data.export_pairs`). Returns (file, rows)."""
        if kind not in EXPORT_KINDS:
            raise StoreError(f"Unknown export kind {kind!r}: pick one of {', '.join(EXPORT_KINDS)}.")
        check_format(fmt)
        stem = self.exports_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        target = stem.with_suffix(EXPORT_SUFFIXES[fmt])
        write = self.store.training_data.export_pairs if kind == "pairs" else self.store.training_data.export_unpaired
        count = write(target, fmt, include_arena=include_arena)
        if fmt == "hf":
            target = Path(shutil.make_archive(str(stem), "zip", root_dir=target))
        return target, count

    def close(self) -> None:
        self.rounds.cancel()
        if self.loop is not None:  # a batch in flight ends at its next token instead of running to its end
            getattr(self.loop.server, "interrupt", lambda: None)()
        self.rounds.wait(timeout=30)
        if self.arena is not None:
            self.arena.close()
        if self.loop is not None:
            self.loop.sampler.stop()
        self.store.close()
        if self.rounds.claim is not None:
            self.rounds.claim.close()


def open_services(config: ServiceConfig, serving: bool = True) -> Services:
    """Open everything and run start-up; raises StoreError / ModelLoadError / ValueError with what to do."""
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
        rounds = RoundRunner(store, model, Path(config.runs), device=device, processes=config.round_processes)
        rounds.claim = claim
        rounds.clean_leftovers()  # rounds that were running are marked failed above: nothing will finish them
        services = Services(store, rounds, model, device, Path(config.exports), access=access)
        rounds.on_done = services.round_finished
        if serving:
            services.loop = _open_loop(store, model, device, config, rounds)
            services.arena = Arena.for_loop(services.loop)  # samples only while someone is in the arena
    except BaseException:
        store.close()
        if claim is not None:
            claim.close()
        raise
    return services


def _open_loop(store: Store, model: str, device: str, config: ServiceConfig, rounds: RoundRunner) -> Loop:
    quantization = resolve_quantization(config.quantization, device)
    vllm_options = {"max_lora_rank": config.vllm_max_lora_rank, "gpu_memory_utilization": config.vllm_gpu_memory}
    server = open_policy_server(
        model,
        device,
        quantization,
        config.backend,
        2 * config.sample_batch,
        vllm_options,
        config.max_prompt_tokens,
        cache_dir=config.model_cache,
    )
    # On a CPU a round and the sampler share the cores: the round's process pauses while a batch samples.
    pause = rounds.paused if not device.startswith("cuda") else None
    sampler = PairSampler(
        store,
        server,
        depth=config.queue_depth,
        batch_prompts=config.sample_batch,
        keep_stale=config.keep_stale_pairs,
        while_sampling=pause,
    )
    saved = store.settings.sampling()
    if saved:
        try:
            sampler.set_settings(SamplingSettings(**saved))
        except (TypeError, ValueError) as err:
            print(f"prefloop: the stored sampling settings {saved} are not usable ({err}); using the defaults.")
    loop = Loop(store, server, sampler)
    loop.restore_serving()
    sampler.start()
    return loop


__all__ = ["BASE_VERSION", "EXPORT_KINDS", "ServiceConfig", "Services", "Status", "open_services"]
