"""Plain records handed out by the store. What each label means for training: storage/labels.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Policy versions: the base model, or the adapter of finished round N, named round_NNN.
BASE_VERSION = "base"


def round_version(round_id: int) -> str:
    """The version name of round `round_id`, e.g. round_007 (also its folder under runs/)."""
    return f"round_{round_id:03d}"


ROUND_STATUSES = ("running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class Prompt:
    """A prompt to sample completions for; `source` says where it came from (typed, a file name, starter)."""

    id: int
    text: str
    source: str


@dataclass(frozen=True)
class Generation:
    """One completion of a prompt by policy `version`; settings: temperature, top_p, max_new_tokens, seed."""

    id: int
    prompt_id: int
    version: str
    text: str
    settings: dict
    author: str = "model"  # "human": written or edited by a labeler (edit to chosen)
    cut_at: int | None = None  # stopped by the token limit after this many new tokens; None: it ended itself


@dataclass(frozen=True)
class Judgement:
    """A vote on a pair as it was shown: left / right generation ids in display order, and the choice."""

    id: int
    prompt_id: int
    left_generation_id: int
    right_generation_id: int
    choice: str
    labeler: str
    policy_version: str
    created_at: datetime
    selection: str = "random"  # how the pair was chosen (labeling/selection.py), "edit" for an edit to chosen


@dataclass(frozen=True)
class ArenaBattle:
    """A blind battle between two versions on one prompt, as stored: which version was shown on the left, who it
    was handed to, and the winner ("a" = version_a, "b", "tie", "both_bad"; None until voted)."""

    id: int
    prompt_id: int
    version_a: str
    version_b: str
    generation_a: int
    generation_b: int
    left_version: str
    labeler: str
    winner: str | None
    voted_at: datetime | None
    created_at: datetime

    @property
    def right_version(self) -> str:
        return self.version_b if self.left_version == self.version_a else self.version_a


@dataclass(frozen=True)
class VotedBattle:
    """A voted arena battle as the arena's statistics take it (`evaluation.Battle(version_a, version_b, winner)`):
    the winner is "a" (version_a won), "b", "tie" or "both_bad"."""

    version_a: str
    version_b: str
    winner: str


@dataclass(frozen=True)
class AuditVote:
    """A counted vote as the label audits take it (`evaluation.audit.Vote`, the same fields): who voted, the
    choice as shown, each side's length in characters, the judgement it is on and the version it was labeled under."""

    labeler: str
    choice: str  # "left", "right", "tie", "both_bad" or "skip"
    left_len: int
    right_len: int
    pair_id: int  # the judgement this vote is on
    batch: str  # the policy version the pair was labeled under


@dataclass(frozen=True)
class Round:
    """A training round and its lineage: the round it continued from and the labels and battles it trained on."""

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
    n_ratings: int = 0
    n_edited: int = 0  # pairs whose chosen side a labeler wrote (edit to chosen)
    n_arena: int = 0  # pairs from arena votes (n_pairs counts the labeling ones)

    @property
    def version(self) -> str:
        """The policy name this round serves as, e.g. round_007."""
        return round_version(self.id)


@dataclass(frozen=True)
class Rating:
    """A 👍 ("up") or 👎 ("down") on one completion, judged on its own."""

    id: int
    prompt_id: int
    generation_id: int
    rating: str
    labeler: str
    policy_version: str
    created_at: datetime
