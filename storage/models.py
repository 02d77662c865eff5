"""Plain records handed out by the store, and the one place that says which labels are DPO pairs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

CHOICES = ("left", "right", "tie", "both_bad", "skip")
# Only these judgements become (chosen, rejected) pairs; ties, both-bad and skips are stored but never trained on.
PAIR_CHOICES = ("left", "right")
# For unpaired losses (KTO) a "both bad" vote is two 👎: each completion on its own is undesirable.
BOTH_BAD_CHOICES = ("both_bad",)


@dataclass(frozen=True)
class Prompt:
    id: int
    text: str
    source: str


@dataclass(frozen=True)
class Generation:
    id: int
    prompt_id: int
    version: str
    text: str
    settings: dict


@dataclass(frozen=True)
class Judgement:
    id: int
    prompt_id: int
    left_generation_id: int
    right_generation_id: int
    choice: str
    labeler: str
    policy_version: str
    created_at: datetime


@dataclass(frozen=True)
class PreferencePair:
    judgement_id: int
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class Round:
    id: int
    status: str
    config: dict
    metrics: dict
    adapter_path: str | None
    parent_round: int | None
    base_model: str
    n_pairs: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None

    @property
    def version(self) -> str:
        return f"round_{self.id:03d}"


@dataclass(frozen=True)
class UnpairedExample:
    judgement_id: int
    prompt: str
    completion: str
    desirable: bool
