"""Rounds: start, follow and cancel DPO rounds, and the policy "a finished round serves".

rounds = Rounds(runner, store, versions, device)
rounds.start(DPOConfig(), processes=None); rounds.status().state; rounds.cancel()
rounds.selection_report().in_latest   # pairs a selection strategy picked against its random control
serve_finished(store, versions, finished)   # the runner's on_done: serve it, or hold it back as the candidate
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from evaluation.diagnostics import RoundDiagnostics, warnings
from evaluation.selection import SelectionComparison, compare_selection, sum_slices
from models import resolve_quantization
from services.versions import Versions
from storage import Round, Store
from training.config import DPOConfig
from training.gate import failed
from training.runner import RoundRunner
from training.status import RoundStatus

__all__ = [  # as the UI shows them
    "RoundDiagnostics",
    "RoundStatus",
    "Rounds",
    "SelectionComparison",
    "SelectionReport",
    "selection_report",
    "serve_finished",
    "warnings",
]


def serve_finished(store: Store, versions: Versions, finished: Round) -> str:
    """A finished round serves: handed over live when a model serves, else recorded for the next start. With
    review on (`Rounds.set_review`), or when it failed the health gate (training/gate.py), it waits as the
    candidate until someone serves it. Returns what happened. The runner's `on_done`, given when it is made."""
    reasons = failed(finished.metrics)
    if reasons:
        store.rounds.set_candidate(finished.version)
        return (
            f"{finished.version} failed the health check and was not served; the previous version keeps "
            f"serving. Failed: {'; '.join(reasons)}. Compare it first; an admin can still serve it on purpose "
            "(recorded)."
        )
    if store.settings.review():
        store.rounds.set_candidate(finished.version)
        return f"{finished.version} is ready for review; the previous version keeps serving."
    versions.hand_over(finished.version)
    return f"{finished.version} is now serving."


@dataclass(frozen=True)
class SelectionReport:
    """Held-out pairs a selection strategy picked against its random control (evaluation/selection.py): in the
    newest finished round (`latest`), and summed over the `rounds` finished rounds that recorded slices. Both
    lists are empty while no strategy picked pairs (every pair random): then there is nothing to report."""

    latest: str | None
    in_latest: list[SelectionComparison]
    rounds: int
    in_all: list[SelectionComparison]


def selection_report(rounds: Iterable[Round]) -> SelectionReport:
    """The SelectionReport of `rounds` (oldest first), from each done round's metrics["heldout_by_selection"]."""
    done = [r for r in rounds if r.status == "done"]
    slices = [r.metrics.get("heldout_by_selection") for r in done]
    latest = done[-1].version if done else None
    in_latest = compare_selection(sum_slices(slices[-1:]))
    return SelectionReport(latest, in_latest, sum(map(bool, slices)), compare_selection(sum_slices(slices)))


class Rounds:
    def __init__(self, runner: RoundRunner, store: Store, versions: Versions, device: str):
        self.runner, self.store, self.versions, self.device = runner, store, versions, device

    def start(self, config: DPOConfig, processes: int | None = None) -> int:
        """Plan a round from the labels and train it in its own process; returns its id (TrainingError, ValueError
        or StoreError say why it cannot start)."""
        return self.runner.start(config, processes=processes)

    def status(self) -> RoundStatus:
        """The running or last round: state, message, progress, history (`RoundRunner.status`)."""
        return self.runner.status()

    def cancel(self) -> None:
        self.runner.cancel()

    def wait(self, timeout: float | None = None) -> None:
        self.runner.wait(timeout)

    def list(self) -> list[Round]:
        """Every round recorded, oldest first, whatever its state."""
        return self.store.rounds.list()

    def selection_report(self) -> SelectionReport:
        """How pairs picked by a selection strategy fared against the random control, newest round and all."""
        return selection_report(self.list())

    def training_mode(self) -> str:
        """How rounds train on this device, in words."""
        return "QLoRA: 4-bit NF4 base + LoRA" if resolve_quantization("auto", self.device) == "nf4" else "plain LoRA"

    def round_finished(self, finished: Round) -> str:
        """What the runner does with a finished round: `serve_finished`. Returns what happened."""
        return serve_finished(self.store, self.versions, finished)

    def review(self) -> bool:
        """Whether each round waits for review before it serves."""
        return self.store.settings.review()

    def set_review(self, on: bool) -> None:
        """Review each round before it serves (on), or serve each as it finishes (off, the default); kept in the
        store, so it holds after a restart."""
        self.store.settings.set_review(on)
