"""Label audits: does a labeler favour the left side or the longer answer, how often do they tie, skip or say
"both bad", and do labelers agree with each other.

Every result carries `plain`, one sentence for the UI. Rates come with 95% Wilson intervals and p-values from
scipy's exact two-sided binomial test against 50%.

    from evaluation.audit import Vote, position_bias
    votes = [Vote("ada", "left", left_len=120, right_len=80, pair_id=1)]
    for result in position_bias(votes):
        print(result.plain)
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

CHOICES = ("left", "right", "tie", "both_bad", "skip")  # the judgements table's choices
SIGNIFICANCE = 0.05
MIN_VOTES = 10  # below this, a non-significant result says "too few votes to tell" rather than "no sign"


@dataclass(frozen=True)
class Vote:
    """One judgement as the audits need it: who voted, on which sides, and how long each side was."""

    labeler: str
    choice: str  # "left", "right", "tie", "both_bad" or "skip"
    left_len: int = 0  # length of the left completion (tokens or characters, the same unit for both sides)
    right_len: int = 0
    pair_id: int | str | None = None  # the judgement or pair this vote is on
    batch: str | None = None  # the round or labeling batch it belongs to; filter on it before auditing

    def __post_init__(self):
        if self.choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {self.choice!r}")
        if self.left_len < 0 or self.right_len < 0:
            raise ValueError(f"lengths must be >= 0, got left_len={self.left_len}, right_len={self.right_len}")


@dataclass(frozen=True)
class BiasTest:
    """A share tested against 50%: `rate` of `n` votes, its 95% Wilson interval, the exact binomial p-value."""

    who: str  # a labeler, or "everyone"
    rate: float  # NaN when n == 0
    low: float
    high: float
    n: int
    p_value: float
    plain: str


@dataclass(frozen=True)
class Rates:
    """Shares of one labeler's votes that were ties, "both bad" and skips (of all `n` votes)."""

    labeler: str
    n: int
    tie: float
    both_bad: float
    skip: float
    plain: str


@dataclass(frozen=True)
class Agreement:
    """Inter-labeler agreement on side-free labels.

    `kappa[(a, b)]`: Cohen's kappa of labelers a and b on the items both labeled (NaN if under 2 such items or
    if both gave one constant label), with `shared[(a, b)]` that item count. `alpha`: nominal Krippendorff's
    alpha over all items with 2+ labels (NaN if none). `with_majority[labeler]`: (rate, n), how often the
    labeler agrees with the most common label of the others, over the n items where the others have one.
    """

    kappa: dict[tuple[str, str], float]
    shared: dict[tuple[str, str], int]
    alpha: float
    with_majority: dict[str, tuple[float, int]]
    plain: str


def _test(hits: int, n: int) -> tuple[float, float, float, float]:
    """(rate, low, high, p_value) for `hits` of `n` against 50%; (NaN, 0, 1, 1) when n == 0."""
    if n == 0:
        return float("nan"), 0.0, 1.0, 1.0
    result = binomtest(hits, n, 0.5)
    ci = result.proportion_ci(0.95, method="wilson")
    return hits / n, ci.low, ci.high, result.pvalue


def _by_labeler(votes: Iterable[Vote]) -> dict[str, list[Vote]]:
    """Votes grouped by labeler, labelers in sorted order."""
    groups: dict[str, list[Vote]] = {}
    for vote in votes:
        groups.setdefault(vote.labeler, []).append(vote)
    return dict(sorted(groups.items()))


def position_bias(votes: Sequence[Vote]) -> list[BiasTest]:
    """Per labeler (sorted by name): the share of decisive (left/right) votes that picked the left side.

    Sides are randomized, so a fair labeler sits near 50%; p < 0.05 is reported as a likely position bias.
    Returns one BiasTest per labeler with at least one vote.
    """
    results = []
    for labeler, group in _by_labeler(votes).items():
        n = sum(v.choice in ("left", "right") for v in group)
        left = sum(v.choice == "left" for v in group)
        rate, low, high, p = _test(left, n)
        if n == 0:
            plain = f"{labeler} has no left/right votes yet."
        elif p < SIGNIFICANCE:
            side = "left" if rate > 0.5 else "right"
            plain = f"{labeler} picks the left answer {rate:.0%} of the time (n={n}, p={p:.2g}): likely a position "
            plain += f"bias toward the {side}; ask them to read both answers before voting."
        else:
            verdict = "no sign of a position bias" if n >= MIN_VOTES else "too few votes to tell yet"
            plain = f"{labeler} picks the left answer {rate:.0%} of the time (n={n}, p={p:.2g}): {verdict}."
        results.append(BiasTest(labeler, rate, low, high, n, p, plain))
    return results


def length_bias(votes: Sequence[Vote]) -> BiasTest:
    """Over everyone's decisive votes whose two sides differ in length: the share that picked the longer one.

    A share well above 50% means the labels reward length, and a DPO round will learn to write longer.
    Returns a BiasTest with who="everyone".
    """
    decisive = [v for v in votes if v.choice in ("left", "right") and v.left_len != v.right_len]
    longer = sum((v.choice == "left") == (v.left_len > v.right_len) for v in decisive)
    n = len(decisive)
    rate, low, high, p = _test(longer, n)
    if n == 0:
        plain = "No left/right votes on answers of different lengths yet."
    elif p < SIGNIFICANCE:
        what = "longer" if rate > 0.5 else "shorter"
        plain = f"The longer answer wins {rate:.0%} of the time (n={n}, p={p:.2g}): labels favour {what} answers, "
        plain += f"and rounds will drift {what}; check whether that is the taste you want."
    else:
        verdict = "no sign of a length bias" if n >= MIN_VOTES else "too few votes to tell yet"
        plain = f"The longer answer wins {rate:.0%} of the time (n={n}, p={p:.2g}): {verdict}."
    return BiasTest("everyone", rate, low, high, n, p, plain)


def rates(votes: Sequence[Vote]) -> list[Rates]:
    """Per labeler (sorted by name): the shares of all their votes that were ties, "both bad" and skips."""
    results = []
    for labeler, group in _by_labeler(votes).items():
        n = len(group)
        count = Counter(v.choice for v in group)
        tie, both_bad, skip = (count[c] / n for c in ("tie", "both_bad", "skip"))
        plain = f"{labeler}: {tie:.0%} ties, {both_bad:.0%} both bad, {skip:.0%} skipped (n={n})."
        if tie + both_bad + skip > 0.5:
            plain += " Most of these votes make no DPO pair; if the answers often look alike, sample more varied ones."
        results.append(Rates(labeler, n, tie, both_bad, skip, plain))
    return results


def krippendorff_alpha_nominal(units: Iterable[Sequence[str]]) -> float:
    """Krippendorff's alpha for nominal data (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").

    `units`: for each item, the labels it got (any number of labelers; items with fewer than 2 are unpairable
    and ignored). Builds the coincidence matrix o[c, k] (each ordered pair of labels within an item adds
    1 / (m - 1)); alpha = 1 - (n - 1) * sum(o off the diagonal) / sum(n_c * n_k off the diagonal).
    Returns alpha (1 = perfect, 0 = chance); NaN if no item has 2 labels or only one value was ever used.
    """
    units = [list(u) for u in units if len(u) >= 2]
    values = sorted({label for unit in units for label in unit})
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in units:
        for c, k in itertools.permutations(unit, 2):
            o[index[c], index[k]] += 1 / (len(unit) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    disagree = o.sum() - np.trace(o)
    expected = n_c.sum() ** 2 - (n_c**2).sum()
    if n == 0 or expected == 0:
        return float("nan")
    return float(1 - (n - 1) * disagree / expected)


def _side_free(
    labels: Mapping[object, Mapping[str, str | None]], completions: Mapping[object, tuple[str, str]] | None
) -> dict[object, dict[str, str]]:
    """Labels without skips, with completion ids mapped to "first" / "second" when `completions` is given."""
    clean = {}
    for item, by in labels.items():
        clean[item] = {}
        for who, label in by.items():
            if label in (None, "skip"):
                continue
            if label in ("left", "right"):
                raise ValueError(
                    f"{who}'s label on item {item!r} is {label!r}: sides are re-randomized per labeler, so map it "
                    "back to the chosen completion's id first"
                )
            if completions is not None and label not in ("tie", "both_bad"):
                pair = completions.get(item)
                if pair is None or label not in pair:
                    raise ValueError(
                        f"{who}'s label {label!r} on item {item!r} is not one of its completions {pair}, 'tie' or "
                        "'both_bad'; pass each item's two completion ids in `completions`"
                    )
                label = "first" if label == pair[0] else "second"
            clean[item][who] = label
    return clean


def agreement(
    labels: Mapping[object, Mapping[str, str | None]], completions: Mapping[object, tuple[str, str]] | None = None
) -> Agreement:
    """Agreement between labelers who labeled the same items.

    `labels`: {item_id: {labeler: label}} with side-free labels: "tie", "both_bad" or the chosen completion's
    id such as "gen_123". Sides are re-randomized per labeler, so map "left"/"right" back to the completion
    first; "skip" and None are dropped.
    `completions`: {item_id: (id_1, id_2)}, each item's two completion ids in a fixed order (e.g. by generation
    id). Kappa and alpha count chance agreement over categories shared by all items, so completion ids are
    mapped to "first" / "second" through it. Without it each distinct label is its own category: right for
    labels that mean the same on every item (e.g. "first" / "second", or in the arena the version that wrote
    the chosen answer), but per-item ids would make chance agreement look tiny and inflate kappa and alpha
    toward the raw agreement rate. Returns an Agreement (see there for NaN cases).
    """
    clean = _side_free(labels, completions)
    labelers = sorted({who for by in clean.values() for who in by})
    kappa, shared = {}, {}
    for a, b in itertools.combinations(labelers, 2):
        both = [(by[a], by[b]) for by in clean.values() if a in by and b in by]
        shared[(a, b)] = len(both)
        if len(both) < 2 or len({lab for pair in both for lab in pair}) < 2:
            kappa[(a, b)] = float("nan")  # undefined: chance agreement is already 1
        else:
            kappa[(a, b)] = float(cohen_kappa_score([x for x, _ in both], [y for _, y in both]))
    with_majority = {}
    for who in labelers:
        hits = n = 0
        for by in clean.values():
            others = Counter(lab for other, lab in by.items() if other != who).most_common(2)
            if who not in by or not others or (len(others) == 2 and others[0][1] == others[1][1]):
                continue  # no label from them, nobody else, or no single most common label
            n += 1
            hits += by[who] == others[0][0]
        with_majority[who] = (hits / n if n else float("nan"), n)
    alpha = krippendorff_alpha_nominal(by.values() for by in clean.values())
    return Agreement(kappa, shared, alpha, with_majority, _agreement_plain(alpha, clean))


def _agreement_plain(alpha: float, clean: Mapping[object, Mapping[str, str]]) -> str:
    """One sentence on Krippendorff's alpha, using his rule of thumb (>= 0.8 reliable, >= 0.667 tentative)."""
    items = sum(len(by) >= 2 for by in clean.values())
    if np.isnan(alpha):
        return "Not enough overlap to measure agreement yet: have two people label the same pairs."
    if alpha >= 0.8:
        verdict = "labelers agree well"
    elif alpha >= 0.667:
        verdict = "labelers agree moderately; fine for tentative conclusions"
    else:
        verdict = "labelers often disagree; write down what a good answer is, or expect noisy rounds"
    return f"Krippendorff's alpha is {alpha:.2f} over {items} shared items: {verdict}."
