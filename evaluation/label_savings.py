"""How many labels does a pair-selection strategy need to teach what random pairs teach with 40? From rounds
trained on the first n labels of each strategy, for several n and several repeats (bench.tastes --selection
random spread --labels 20 40 80 --repeats 3). Plain Python.

    curve = {20: 0.55, 40: 0.61, 80: 0.70}          # one repeat's win rate against the base, by labels
    labels_to_match(curve, target=0.64)              # 53.3: linear between the counts measured
    compare_strategies(runs, match=40)               # per strategy and taste, over the repeats

The target of a taste is random's mean win rate at `match` labels over the repeats, so random's own figure
scatters around `match` and shows how much the repeats disagree. A repeat that never reaches the target within
the counts measured has no figure (None, "more than the most labels measured"); one already there at the fewest
has that count (an upper bound). Over the repeats: the median, and the lowest and highest as the interval;
with n repeats that range holds the true median with probability 1 - 2^(1-n) (75 % with 3, 94 % with 5).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence

REFERENCE = "random"


def labels_to_match(curve: Mapping[int, float], target: float) -> float | None:
    """The fewest labels at which `curve` (win rate by number of labels, linear between the counts measured)
    reaches `target`: the smallest count if it is already there, None if no count measured reaches it."""
    points = sorted(curve.items())
    if not points:
        raise ValueError("labels_to_match needs at least one (labels, win rate) point")
    if points[0][1] >= target:
        return float(points[0][0])
    for (n0, w0), (n1, w1) in itertools.pairwise(points):
        if w1 >= target:  # w0 < target <= w1
            return n0 + (target - w0) / (w1 - w0) * (n1 - n0)
    return None


def over_repeats(values: Sequence[float | None]) -> dict:
    """Median, lowest and highest of per-repeat figures, None standing for "more than measured": the median is
    None when at least half are, the highest when any is."""
    ranked = sorted(values, key=lambda v: float("inf") if v is None else v)
    finite = [v for v in ranked if v is not None]
    middle = len(ranked) // 2
    if len(ranked) % 2:
        median = ranked[middle]
    else:
        lower, upper = ranked[middle - 1], ranked[middle]
        median = None if lower is None or upper is None else (lower + upper) / 2
    return {
        "median": median,
        "low": finite[0] if finite else None,
        "high": None if len(finite) < len(ranked) else finite[-1],
        "per_repeat": list(values),
        "reached": len(finite),
    }


def compare_strategies(runs: Iterable[Mapping], match: int = 40, reference: str = REFERENCE) -> dict:
    """Per strategy: for each taste, labels needed to reach `reference`'s mean win rate at `match` labels
    (`over_repeats`), its mean over the tastes, the saving against `match` (1 - mean / match; None when any
    taste's median is None), the tastes where it needs more labels than the reference (median above `match`,
    or None: the target is the reference's own mean at `match`, so `match` is what the reference needs, also where
    its repeats scatter around it or it has no other count), and its rounds' mean NLL under the base at `match`
    labels beside the reference's (fluency must not be what pays).

    `runs`: rows with "strategy", "taste", "repeat", "labels", "win_rate" and "nll_round" (bench.tastes')."""
    runs = list(runs)
    curves: dict[tuple[str, str, int], dict[int, float]] = {}
    nll: dict[str, list[float]] = {}
    for run in runs:
        curves.setdefault((run["strategy"], run["taste"], run["repeat"]), {})[run["labels"]] = run["win_rate"]
        if run["labels"] == match:
            nll.setdefault(run["strategy"], []).append(run["nll_round"])
    strategies = list(dict.fromkeys(run["strategy"] for run in runs))
    tastes = list(dict.fromkeys(run["taste"] for run in runs))
    if reference not in strategies:
        raise ValueError(f"comparing strategies needs {reference!r} among them: add it to --selection")
    found: dict[str, dict] = {s: {"tastes": {}} for s in strategies}
    for taste in tastes:
        at_match = [c[match] for (s, t, _), c in curves.items() if s == reference and t == taste and match in c]
        if not at_match:
            raise ValueError(f"{reference} has no round at {match} labels on {taste!r}: add {match} to --labels")
        target = statistics.mean(at_match)
        for strategy in strategies:
            repeats = sorted((r, c) for (s, t, r), c in curves.items() if s == strategy and t == taste)
            found[strategy]["tastes"][taste] = {"target": target} | over_repeats(
                [labels_to_match(c, target) for _, c in repeats]
            )
    key = f"labels_to_match_{reference}_{match}"
    for strategy, result in found.items():
        medians = [t["median"] for t in result["tastes"].values()]
        mean = None if None in medians else statistics.mean(medians)
        result[key] = mean
        result["saving"] = None if mean is None else 1 - mean / match
        result["worse_than_reference"] = [
            taste
            for taste, t in result["tastes"].items()
            if strategy != reference and (t["median"] is None or t["median"] > match)
        ]
        result["nll_round"] = statistics.mean(nll[strategy]) if nll.get(strategy) else None
    return found
