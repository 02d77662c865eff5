"""Versions: which exist (the base and the finished rounds), which one serves, serving another, the candidate
awaiting review, and comparing two on one prompt.

    versions = Versions(store, server, sampler)    # beside the labeling loop; Versions(store): no model (the CLI)
    versions.restore()                              # at start: the recorded version, or the newest that loads
    versions.serve("round_002", who="ada")          # on someone's say-so (a failed health check is recorded)
    versions.compare("Explain tides.", "base", "round_002", SamplingSettings(seed=0))
"""

from __future__ import annotations

import logging

from labeling.loop import check_prompt_length
from labeling.sampler import PairSampler
from models.adapters import check_adapter
from serving import ModelBusy, PolicyBackend, SamplingSettings
from storage import BASE_VERSION, Round, Store, StoreError
from training.gate import failed

log = logging.getLogger(__name__)
COMPARE_WAIT_S = 60.0  # how long Compare waits for the model before it says it is busy


class Versions:
    def __init__(self, store: Store, server: PolicyBackend | None = None, sampler: PairSampler | None = None):
        self.store, self.server, self.sampler = store, server, sampler
        self.notice: str | None = None  # what the UI should say about serving (a version that did not load)
        self._checked: set[str] = set()  # versions whose adapter passed `check_adapter` and loaded

    def list(self) -> list[str]:
        """The base and the finished rounds, oldest first."""
        return [BASE_VERSION] + [r.version for r in self.store.rounds.list() if r.status == "done"]

    def serving(self) -> str:
        """The version serving now (without a model: the one the store records for the next start)."""
        return self.server.version if self.server is not None else self.store.rounds.get_serving()

    def candidate(self) -> str | None:
        """The finished round awaiting review, unless it serves already; None when there is none."""
        candidate = self.store.rounds.get_candidate()
        return None if candidate in (None, self.serving()) else candidate

    def failed_checks(self, version: str | None) -> list[str]:
        """The health checks (training/gate.py) `version` failed; [] for the base, an unknown version or none."""
        return failed(next((r.metrics for r in self.store.rounds.list() if r.version == version), {}))

    def restore(self) -> str | None:
        """Serve the version the store records (after a restart). If its adapter does not load (gone, damaged),
        serve the newest earlier version that does, without changing what the store records, and keep a notice
        that says so (`self.notice`, also returned; None when the recorded version serves)."""
        recorded = self.store.rounds.get_serving()
        done = [r for r in self.store.rounds.list() if r.status == "done"]
        newest_first = [r.version for r in sorted(done, key=lambda r: r.id, reverse=True)]
        if recorded in newest_first:
            newest_first = newest_first[newest_first.index(recorded) + 1 :]
        failures = []
        for version in dict.fromkeys([recorded, *newest_first, BASE_VERSION]):
            try:
                self.load(version)
                self.server.serve(version)
                break
            except Exception as err:  # a missing or damaged adapter: OSError, safetensors' and peft's errors
                failures.append(f"{version} ({type(err).__name__}: {err})")
        self.sampler.invalidate()
        self.notice = None
        if failures:
            self.notice = (
                f"Could not load {'; '.join(failures)}; serving {self.server.version} instead. The database still "
                f"records {recorded} as the serving version: repair its adapter folder and restart, or serve a "
                "version from the Train tab."
            )
            log.warning(self.notice)
        return self.notice

    def load(self, version: str) -> None:
        """Make `version` (the base or a finished round) available for generation, without serving it."""
        if version == BASE_VERSION:
            return
        rounds = {r.version: r for r in self.store.rounds.list() if r.status == "done"}
        if version not in rounds:
            raise ValueError(f"Unknown version {version!r}; pick one of {self.list()}")
        found = rounds[version]
        if version not in self._checked:  # once loaded, the server keeps the weights it read
            check_adapter(found.adapter_path, found.metrics.get("adapter_sha256"), version)
        self.server.load(version, found.adapter_path)
        self._checked.add(version)

    def serve(self, version: str, who: str) -> list[str]:
        """Serve `version` (base or a done round) on someone's say-so; serving a round that failed the health gate
        is recorded with who served it and when. Returns the checks it had failed ([] when none)."""
        found = self._round(version) if version != BASE_VERSION else None
        reasons = failed(found.metrics) if found is not None else []
        if reasons:
            self.store.rounds.record_served_anyway(found.id, who)
        self.hand_over(version)
        return reasons

    def hand_over(self, version: str) -> None:
        """Make `version` (the base or a finished round) the serving policy, e.g. after a round or to roll back;
        without a model, record it for the next start.

        Returns once the first pairs from `version` are queued (see `PairSampler.handover`): until then
        labelers keep getting pairs from the version serving now, afterwards only from `version`. Serves run
        one at a time. If `version` cannot sample, or the store cannot record it, the version serving now
        keeps serving, with its queue, and the error says so."""
        if self.server is None:
            self.store.rounds.set_serving(version)
            return
        self.load(version)

        def swap() -> None:
            previous = self.server.version
            try:  # the store first: if it refuses, nothing has changed yet
                self.store.rounds.set_serving(version)
            except Exception as err:
                raise StoreError(
                    f"Could not record {version} as the serving version, so {previous} keeps serving: {err}"
                ) from err
            try:
                self.server.serve(version)
            except BaseException:
                self.store.rounds.set_serving(previous)
                raise

        self.sampler.handover(version, swap)
        self.notice = None

    def compare(self, prompt: str, version_a: str, version_b: str, settings: SamplingSettings) -> tuple[str, str]:
        """One completion from each version, with the same settings and seed."""
        prompt = (prompt or "").strip()
        if not prompt:
            raise ValueError("Prompt is empty: type a prompt or pick one from the store.")
        check_prompt_length(self.server, prompt)
        if settings.seed is None:
            settings = SamplingSettings(settings.temperature, settings.top_p, settings.max_new_tokens, seed=0)
        outputs = []
        for version in (version_a, version_b):
            self.load(version)
            try:  # a comparison waits for the model a bounded time, never ahead of labelers' pairs for long
                with self.sampler.while_sampling():  # as a batch does (a round's process pauses on a CPU)
                    completion = self.server.generate([prompt], 1, settings, version, wait_s=COMPARE_WAIT_S)[0][0]
                outputs.append(completion)
            except ModelBusy as err:
                raise ValueError(str(err)) from err
        return outputs[0], outputs[1]

    def _round(self, version: str) -> Round:
        found = {r.version: r for r in self.store.rounds.list()}.get(version)
        if found is None:
            raise StoreError(f"No round {version!r}; pick base or a finished round from the list.")
        return found
