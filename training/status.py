"""What the Train tab shows about the running or last round, folded from its progress events.

    status = RoundStatus("running", "Starting…", round=3)
    status = status.with_event({"event": "step", "step": 1, "total_steps": 8, "loss": 0.69, ...})
    status.state, status.message, status.history[-1]["loss"], status.phases["steps"]["done"]

A status is a value: the runner replaces it at each event, so a reader's copy never changes under it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from storage import round_version
from training import folder

STATES = ("idle", "running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class RoundStatus:
    """The running or last round: `state` (one of STATES), what to say about it, its id, its optimizer steps'
    metrics so far (one dict per step event, less "event") and its phases' progress (name -> {"done", "total",
    "seconds"}, as the phase events report it)."""

    state: str = "idle"
    message: str = ""
    round: int | None = None
    history: list[dict] = field(default_factory=list)
    phases: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {self.state!r}")

    def with_event(self, event: dict) -> RoundStatus:
        """This status after one progress event (training/folder.py); events it does not show leave it as is."""
        kind = event.get("event")
        if kind == folder.STEP:
            stats = {k: v for k, v in event.items() if k != "event"}
            # A step no later than the last: training started over (the out-of-memory retry), so does the plot.
            history = self.history if not self.history or stats["step"] > self.history[-1]["step"] else []
            steps = {"done": stats["step"], "total": stats["total_steps"], "seconds": stats.get("seconds", 0.0)}
            return dataclasses.replace(
                self,
                history=[*history, stats],
                phases=self.phases | {"steps": steps},
                message=f"step {stats['step']}/{stats['total_steps']} · loss {stats['loss']:.4f}",
            )
        if kind == folder.PHASE:
            phase = {k: event[k] for k in ("done", "total", "seconds")}
            return dataclasses.replace(self, phases=self.phases | {event["phase"]: phase})
        if kind == folder.STAGE:
            return dataclasses.replace(self, message=f"{round_version(self.round)}: {event['message']}")
        return self

    def ended(self, state: str, message: str) -> RoundStatus:
        """The same round, ended (done, failed or cancelled) with what to say about it."""
        return dataclasses.replace(self, state=state, message=message)
