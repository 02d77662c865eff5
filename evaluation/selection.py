"""Did the pairs a selection strategy picked fare better than its random control? From the held-out pairs of
rounds, grouped by how each pair was chosen (labeling/selection.py: a strategy's name, "control", "random",
"edit"), as training/loss.py `metrics_by_slice` counts them: accuracy of the round's implicit reward per slice,
with a 95 % Wilson interval, and Fisher's exact test of the strategy's slice against the control's. Plain Python.

    from evaluation.selection import compare_selection, sum_slices
    slices = sum_slices([{"spread": {"n": 12, "correct": 9, "margin": 0.3}, "control": {"n": 3, "correct": 2}}])
    for comparison in compare_selection(slices):
        print(comparison.text)  # Pairs picked by spread: 9 of 12 right (0.75 [0.47, 0.91]) ... not significant ...

Only "control" counts as the comparison: its pairs were drawn at random from the same candidates, by the same
model, in the same weeks as the strategy's, which pairs labeled while the strategy was random were not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from evaluation.proportions import fisher_exact, wilson_interval

CONTROL = "control"
NOT_A_STRATEGY = frozenset({"random", CONTROL, "edit"})  # slices no strategy picked
LABEL_MORE = "label more before judging the strategy"


@dataclass(frozen=True)
class SliceAccuracy:
    """One slice's held-out pairs: `correct` of `n` with the chosen reward above the rejected one, that share
    (`accuracy`) and its 95 % Wilson interval; `margin` the mean reward margin (None if not recorded)."""

    name: str
    n: int
    correct: int
    accuracy: float
    low: float
    high: float
    margin: float | None = None


@dataclass(frozen=True)
class SelectionComparison:
    """A strategy's slice against the control (None: no control pair held out yet); `difference` is the
    strategy's accuracy minus the control's, `p_value` Fisher's exact test's, `text` the sentence to show."""

    strategy: SliceAccuracy
    control: SliceAccuracy | None
    difference: float | None
    p_value: float | None
    significant: bool
    text: str


def sum_slices(per_round: Iterable[dict | None]) -> dict[str, dict]:
    """Per-slice counts summed over rounds (each {slice: {"n", "correct", "margin"}}, or None for a round that
    has none); the margin becomes the mean over all their pairs. A pair held out by two rounds counts twice."""
    totals: dict[str, dict] = {}
    for slices in per_round:
        for name, counts in (slices or {}).items():
            total = totals.setdefault(name, {"n": 0, "correct": 0, "margin": 0.0})
            total["n"] += counts["n"]
            total["correct"] += counts["correct"]
            if total["margin"] is not None and counts.get("margin") is not None:
                total["margin"] += counts["margin"] * counts["n"]
            else:
                total["margin"] = None
    for total in totals.values():
        if total["margin"] is not None and total["n"]:
            total["margin"] /= total["n"]
    return {name: total for name, total in totals.items() if total["n"]}


def slice_accuracy(name: str, counts: dict) -> SliceAccuracy:
    """`counts` ({"n", "correct", optional "margin"}, n > 0) as a SliceAccuracy."""
    n, correct = int(counts["n"]), int(counts["correct"])
    if not 0 <= correct <= n or n == 0:
        raise ValueError(f"slice {name!r} needs 0 <= correct <= n and n > 0, got {correct} of {n}")
    low, high = wilson_interval(correct, n)
    return SliceAccuracy(name, n, correct, correct / n, low, high, counts.get("margin"))


def compare_selection(slices: dict[str, dict], alpha: float = 0.05) -> list[SelectionComparison]:
    """Each strategy's slice in `slices` ({slice: {"n", "correct", "margin"}}) against the "control" slice,
    largest first; empty when no strategy picked any of the pairs (every pair random): nothing to say."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    found = {name: slice_accuracy(name, counts) for name, counts in slices.items() if counts["n"]}
    control = found.get(CONTROL)
    strategies = sorted((s for s in found.values() if s.name not in NOT_A_STRATEGY), key=lambda s: -s.n)
    return [_compare(strategy, control, alpha) for strategy in strategies]


def _compare(strategy: SliceAccuracy, control: SliceAccuracy | None, alpha: float) -> SelectionComparison:
    """One strategy's slice against the control's: Fisher's exact test on right / wrong, and the sentence."""
    picked = f"Pairs picked by {strategy.name}: {strategy.correct} of {strategy.n} right ({_share(strategy)})"
    if control is None:
        text = f"{picked}; no random control pair was held out, so there is nothing to compare with — {LABEL_MORE}."
        return SelectionComparison(strategy, None, None, None, False, text)
    table = (strategy.correct, strategy.n - strategy.correct, control.correct, control.n - control.correct)
    p_value, difference = fisher_exact(*table), strategy.accuracy - control.accuracy
    significant = p_value < alpha
    text = (
        f"{picked}; random control: {control.correct} of {control.n} ({_share(control)}); the difference, "
        f"{difference:+.2f}, is {'' if significant else 'not '}significant at {alpha:.0%} "
        f"(Fisher's exact test, p = {p_value:.2g})"
    )
    more = "more" if difference > 0 else "less"
    text += f": {strategy.name}'s pairs were ranked right {more} often." if significant else f" — {LABEL_MORE}."
    return SelectionComparison(strategy, control, difference, p_value, significant, text)


def _share(s: SliceAccuracy) -> str:
    """A slice's share with its interval, as 0.75 [0.47, 0.91], and its mean margin when recorded."""
    margin = "" if s.margin is None else f", mean margin {s.margin:+.2f}"
    return f"{s.accuracy:.2f} [{s.low:.2f}, {s.high:.2f}]{margin}"
