"""The audit: every counted vote for the bias tests, second looks for agreement between labelers, and the share
of pairs served as second looks. The statistics themselves are evaluation/audit.py's, reachable from here.

    audit = Audit(store)
    audit.votes()                      # [Vote("ana", "left", 120, 80, 7, "base"), ...] as evaluation/audit.py takes
    audit.set_second_look_share(0.1)   # a tenth of the pairs served are someone else's, shown again
    from services.audit import position_bias   # evaluation.audit's, loaded on first use
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage import Store

if TYPE_CHECKING:  # evaluation.audit imports scipy and scikit-learn (~2 s): loaded when an audit is asked for
    from evaluation.audit import Vote

STATISTICS = ("SIGNIFICANCE", "Vote", "agreement", "length_bias", "position_bias", "rates")


def __getattr__(name: str):
    """evaluation.audit's statistics (STATISTICS), imported on first use rather than when the app starts."""
    if name in STATISTICS:
        from evaluation import audit

        return getattr(audit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Audit:
    def __init__(self, store: Store):
        self.store = store

    def votes(self) -> list[Vote]:
        """Every counted vote in the store (`store.audit.votes`), as evaluation/audit.py takes them."""
        from evaluation.audit import Vote

        records = self.store.audit.votes()
        return [Vote(v.labeler, v.choice, v.left_len, v.right_len, v.pair_id, v.batch) for v in records]

    def agreement_labels(self) -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, str]]]:
        """Second looks and the votes they repeat, as `evaluation.audit.agreement` takes them."""
        return self.store.audit.agreement_labels()

    def count_second_votes(self) -> int:
        return self.store.audit.count_second_votes()

    def second_look_share(self) -> float:
        """The share of pairs served that are second looks (0: off)."""
        return self.store.settings.second_look_share()

    def set_second_look_share(self, share: float) -> None:
        self.store.settings.set_second_look_share(share)
