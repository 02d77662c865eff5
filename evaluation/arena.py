"""Arena statistics: win rates and Bradley–Terry strengths of model versions from blind pairwise battles.

A battle shows two versions' answers to one prompt, sides hidden and randomized; the vote is mapped back to
`model_a` / `model_b` before it gets here. How outcomes count is decided once, in `_score_a`:

    winner      model_a scores   model_b scores
    "a"         1                0
    "b"         0                1
    "tie"       1/2              1/2
    "both_bad"  1/2              1/2     (neither was preferred: a tie, as Chatbot Arena counts "tie (bothbad)")

Strengths use Chatbot Arena's Elo-like scale (Chiang et al. 2024, "Chatbot Arena", §5; their
`compute_mle_elo`): rating = 1000 + 400 · log10-odds, so a 400-point gap means 10:1 odds of winning.

    from evaluation.arena import Battle, bootstrap_bradley_terry
    battles = [Battle("base", "round_001", "b"), Battle("base", "round_001", "tie")]
    for s in bootstrap_bradley_terry(battles, ["base", "round_001"], anchor="base"):
        print(s.model, round(s.rating), (round(s.low), round(s.high)), s.battles)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse.csgraph import connected_components
from sklearn.linear_model import LogisticRegression

from evaluation.proportions import wilson_interval

WINNERS = ("a", "b", "tie", "both_bad")
SCALE, BASE, INIT_RATING = 400.0, 10.0, 1000.0  # Chatbot Arena's Elo-like scale


@dataclass(frozen=True)
class Battle:
    """One blind comparison: `winner` is "a" (model_a won), "b", "tie" or "both_bad"."""

    model_a: str
    model_b: str
    winner: str

    def __post_init__(self):
        if self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS}, got {self.winner!r}; map the vote's side back first")
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two different models, got {self.model_a!r} twice; drop this battle")


@dataclass(frozen=True)
class WinRate:
    """A win rate (ties count half) with its Wilson interval; `enough` is False below `min_battles` battles."""

    rate: float
    low: float
    high: float
    n: int
    enough: bool


@dataclass(frozen=True)
class WinMatrix:
    """Pairwise results in `models` order. `wins[i, j]`: decisive wins of i over j; `ties[i, j]`: ties and
    both-bad votes between i and j (symmetric); `battles[i, j]`: all battles between them; `fraction[i, j]`:
    (wins + ties/2) / battles, NaN where they never met (and on the diagonal)."""

    models: list[str]
    wins: np.ndarray
    ties: np.ndarray
    battles: np.ndarray
    fraction: np.ndarray


@dataclass(frozen=True)
class Strength:
    """A model's Bradley–Terry rating, its bootstrap percentile interval and how many battles it was in."""

    model: str
    rating: float
    low: float
    high: float
    battles: int


def _score_a(winner: str) -> float:
    """model_a's points for one battle: a win 1, a loss 0, a tie or "both bad" 1/2. The only place that says so."""
    return {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}[winner]


def win_rate(wins: int, losses: int, ties: int, confidence: float = 0.95, min_battles: int = 10) -> WinRate:
    """Win rate (wins + ties/2) / n over n = wins + losses + ties battles, with a Wilson score interval.

    Ties (and "both bad") count as half a win, so 50% means "as good as the opponent". Wilson rather than the
    normal approximation because it stays inside [0, 1] and behaves at the small counts an arena starts with.
    Returns a WinRate; with no battles its rate is NaN and its interval (0, 1). Below `min_battles`, `enough`
    is False and the UI should say "not enough battles yet" instead of the number.
    """
    if min(wins, losses, ties) < 0:
        raise ValueError(f"counts must be >= 0, got wins={wins}, losses={losses}, ties={ties}")
    n = wins + losses + ties
    low, high = wilson_interval(wins + ties / 2, n, confidence)
    rate = (wins + ties / 2) / n if n else float("nan")
    return WinRate(rate=float(rate), low=float(low), high=float(high), n=int(n), enough=bool(n >= min_battles))


def _indices(battles: Sequence[Battle], models: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Battles as arrays (a index, b index, model_a's score); checks every name is in `models`."""
    if len(set(models)) != len(models):
        raise ValueError(f"models must be unique, got {list(models)}")
    index = {m: i for i, m in enumerate(models)}
    for battle in battles:
        for name in (battle.model_a, battle.model_b):
            if name not in index:
                raise ValueError(f"a battle names {name!r}, which is not in models {list(models)}; add it or drop it")
    a = np.array([index[b.model_a] for b in battles], dtype=int)
    b = np.array([index[b.model_b] for b in battles], dtype=int)
    return a, b, np.array([_score_a(b.winner) for b in battles], dtype=float)


def _tally(
    a: np.ndarray, b: np.ndarray, score_a: np.ndarray, weight: np.ndarray, p: int
) -> tuple[np.ndarray, np.ndarray]:
    """(points, battles), each (p, p): points[i, j] is i's points against j, battles[i, j] their meetings."""
    points = np.bincount(a * p + b, weight * score_a, p * p) + np.bincount(b * p + a, weight * (1 - score_a), p * p)
    count = np.bincount(a * p + b, weight, p * p) + np.bincount(b * p + a, weight, p * p)
    return points.reshape(p, p), count.reshape(p, p)


def win_matrix(battles: Sequence[Battle], models: Sequence[str]) -> WinMatrix:
    """Head-to-head counts and fractions in `models` order; see WinMatrix. For one cell's interval use
    `win_rate(m.wins[i, j], m.wins[j, i], m.ties[i, j])`."""
    a, b, score_a = _indices(battles, models)
    p = len(models)
    decisive = score_a != 0.5
    wins_a, _ = _tally(a[decisive], b[decisive], score_a[decisive], np.ones(decisive.sum()), p)
    _, ties = _tally(a[~decisive], b[~decisive], score_a[~decisive], np.ones((~decisive).sum()), p)
    count = wins_a + wins_a.T + ties
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(count > 0, (wins_a + ties / 2) / count, np.nan)
    return WinMatrix(list(models), wins_a.astype(int), ties.astype(int), count.astype(int), fraction)


def _fit(points: np.ndarray, count: np.ndarray, l2: float) -> np.ndarray:
    """Bradley–Terry ratings (mean 1000) from (p, p) point and battle tallies.

    One ±1 design row per pair that met, entered twice: y = 1 weighted by i's points, y = 0 by j's. A tie is
    half a point each way, which gives the same fit as Chatbot Arena's duplicating a tie as one win each way.
    """
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}; 1.0 is the default, 0 turns the prior off")
    i, j = np.nonzero(np.triu(count) > 0)
    x = np.zeros((len(i), len(count)))
    x[np.arange(len(i)), i], x[np.arange(len(i)), j] = 1.0, -1.0
    design = np.vstack([x, x])
    y = np.r_[np.ones(len(i)), np.zeros(len(i))]
    weight = np.r_[points[i, j], points[j, i]]
    # Newton–Cholesky is fast for a handful of columns but needs the penalty: unpenalized, the ±1 design leaves
    # the mean rating free (a singular Hessian), which lbfgs tolerates.
    solver, C = ("newton-cholesky", 1 / l2) if l2 > 0 else ("lbfgs", np.inf)
    model = LogisticRegression(fit_intercept=False, C=C, solver=solver, tol=1e-8, max_iter=1000)
    beta = model.fit(design, y, sample_weight=weight).coef_[0]
    ratings = INIT_RATING + SCALE * beta / math.log(BASE)
    return ratings - ratings.mean() + INIT_RATING  # only differences are identified


def _check(battles: Sequence[Battle], models: Sequence[str], anchor: str | None) -> tuple[np.ndarray, ...]:
    """Validated battle arrays for a Bradley–Terry fit; raises ValueError saying what to change."""
    if len(models) < 2:
        raise ValueError(f"ranking needs at least two models, got {list(models)}; add another version to compare")
    if not battles:
        raise ValueError("no battles yet: run some arena battles between the models first")
    if anchor is not None and anchor not in models:
        raise ValueError(f"anchor {anchor!r} is not in models {list(models)}; pass one of them or None")
    a, b, score_a = _indices(battles, models)
    _, count = _tally(a, b, score_a, np.ones(len(a)), len(models))
    n_groups, group = connected_components(count > 0, directed=False)
    if n_groups > 1:
        groups = [[m for m, g in zip(models, group, strict=True) if g == k] for k in range(n_groups)]
        raise ValueError(
            f"these groups of models were never compared with each other: {groups}; run battles between "
            "the groups, or leave the unconnected models out of `models`"
        )
    return a, b, score_a


def _anchored(ratings: np.ndarray, models: Sequence[str], anchor: str | None) -> np.ndarray:
    """Ratings shifted so `anchor` sits at 1000 (unchanged when anchor is None: then the mean is 1000)."""
    return ratings if anchor is None else ratings - ratings[list(models).index(anchor)] + INIT_RATING


def bradley_terry(
    battles: Sequence[Battle], models: Sequence[str], anchor: str | None = None, l2: float = 1.0
) -> dict[str, float]:
    """Bradley–Terry strengths on the Elo-like scale: P(i beats j) = 1 / (1 + 10 ** ((R_j - R_i) / 400)).

    Fitted as Chatbot Arena does, by sklearn's LogisticRegression without intercept on ±1 design rows; ties and
    "both bad" count as half a win each way. `l2` adds ½·l2·‖β‖² on the natural-log strengths β (a Gaussian
    prior with sd 1/√l2, about 174 rating points at 1.0) so a model that never lost stays finite; it is
    negligible once models have dozens of battles; 0 gives Chatbot Arena's unpenalized fit.
    Returns {model: rating}; the mean rating is 1000, or `anchor`'s is 1000 if given.
    """
    a, b, score_a = _check(battles, models, anchor)
    ratings = _fit(*_tally(a, b, score_a, np.ones(len(a)), len(models)), l2)
    return dict(zip(models, _anchored(ratings, models, anchor).tolist(), strict=True))


def bootstrap_bradley_terry(
    battles: Sequence[Battle],
    models: Sequence[str],
    rounds: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    anchor: str | None = None,
    l2: float = 1.0,
) -> list[Strength]:
    """Bradley–Terry ratings with percentile-bootstrap intervals: battles resampled with replacement `rounds`
    times (numpy Generator seeded by `seed`), refitted each time.

    Returns one Strength per model, best first; `rating` is the fit on all battles, `low`/`high` the
    bootstrap percentiles. With `anchor`, every refit is shifted so the anchor is 1000, so the intervals
    are relative to it (the anchor's own interval is zero wide).
    """
    if rounds < 2:
        raise ValueError(f"rounds must be >= 2 for an interval, got {rounds}; 200 is a good default")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    a, b, score_a = _check(battles, models, anchor)
    p, n = len(models), len(a)
    point = _anchored(_fit(*_tally(a, b, score_a, np.ones(n), p), l2), models, anchor)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, p))
    for r in range(rounds):
        weight = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        samples[r] = _anchored(_fit(*_tally(a, b, score_a, weight, p), l2), models, anchor)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(samples, [100 * alpha, 100 * (1 - alpha)], axis=0)
    played = np.bincount(np.r_[a, b], minlength=p)
    strengths = [
        Strength(m, float(point[k]), float(low[k]), float(high[k]), int(played[k])) for k, m in enumerate(models)
    ]
    return sorted(strengths, key=lambda s: -s.rating)
