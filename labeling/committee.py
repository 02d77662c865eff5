"""A small committee of reward models fitted to the labels, and the candidate pair it disagrees on most: query by
committee, the reward-ensemble pair selection of ActiveUltraFeedback (2026) and Muldrew et al. (2024) in its
simplest form. Plain numpy; no model forward pass, so it costs the sampler nothing it would notice.

    committee = fit_committee([("Sure! ...", "No."), ...], random.Random(0))   # (chosen, rejected) texts
    pick_committee(["Sure! ...", "No.", "Here is ...", "OK."], random.Random(1), committee)   # (i, j)

Each of `MEMBERS` members is a Bradley-Terry reward, P(a preferred to b) = sigmoid(w . (phi(a) - phi(b))), on
`features` (hashed words, word pairs and punctuation, and length), fitted by L2-regularised logistic regression
to its own bootstrap resample of the decided labels. Where the labels so far say little about how two
candidates differ, the members disagree; the pair shown is the one whose probabilities vary most across them.
Two near-copies get 0.5 from every member (their features cancel), so they are never shown while an unlike pair
is left. With no labels every member is 0 and every pair ties: the pick is then random, as it is among ties.
"""

from __future__ import annotations

import itertools
import random
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DIMENSIONS = 2**11  # hashed n-gram buckets; collisions only blur a few features at the label counts people give
MEMBERS = 8
L2 = 0.05  # keeps the members near 0 (unsure) along what the labels do not pull on
STEPS = 200
NEWEST = 512  # labels a committee is fitted to at most, the newest: a fit stays well under a second
TOKEN = re.compile(r"\w+|[^\w ]")  # words, and each punctuation mark or newline: format is part of a taste too


def features(text: str) -> np.ndarray:
    """A completion as a vector: its lower-cased tokens (words, punctuation marks, newlines) and token pairs,
    hashed into DIMENSIONS buckets with log(1 + count), scaled to length 1; then log(1 + tokens) / 5 for its length."""
    tokens = TOKEN.findall(text.lower())
    grams = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
    vector = np.zeros(DIMENSIONS + 1)
    for gram in grams:
        vector[zlib.crc32(gram.encode()) % DIMENSIONS] += 1.0
    vector[:DIMENSIONS] = np.log1p(vector[:DIMENSIONS])
    norm = np.linalg.norm(vector[:DIMENSIONS])
    if norm:
        vector[:DIMENSIONS] /= norm
    vector[DIMENSIONS] = np.log1p(len(tokens)) / 5
    return vector


@dataclass(frozen=True)
class Committee:
    """The members' weights, one row each, and how many labels they were fitted to."""

    weights: np.ndarray  # (MEMBERS, DIMENSIONS + 1)
    labels: int

    def preference(self, a: str, b: str) -> np.ndarray:
        """Each member's probability that `a` is preferred to `b`."""
        return _sigmoid(self.weights @ (features(a) - features(b)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def fit_members(differences: np.ndarray, counts: np.ndarray, l2: float = L2, steps: int = STEPS) -> np.ndarray:
    """One weight row per row of `counts` (how often each label is in that member's resample): w minimising
    sum_i c_i log(1 + exp(-w . d_i)) / sum_i c_i + l2/2 |w|^2 over the rows d_i = phi(chosen) - phi(rejected), all
    members at once, by gradient descent from 0 with step 1/(max |d|^2 / 4 + l2), above the loss's curvature."""
    weights = np.zeros((len(counts), differences.shape[1]))
    step = 1.0 / (float(np.max(np.sum(differences**2, axis=1))) / 4 + l2)
    share = counts / counts.sum(axis=1, keepdims=True)  # (members, labels)
    for _ in range(steps):
        margins = weights @ differences.T  # (members, labels)
        weights -= step * (-(share * _sigmoid(-margins)) @ differences + l2 * weights)
    return weights


def fit_committee(
    labels: Sequence[tuple[str, str]], rng: random.Random, members: int = MEMBERS, newest: int = NEWEST
) -> Committee:
    """A committee on decided labels, (chosen, rejected) texts, oldest first (the `newest` last are used): each
    member on its own bootstrap resample."""
    labels = list(labels)[-newest:]
    if not labels:
        return Committee(np.zeros((members, DIMENSIONS + 1)), 0)
    differences = np.stack([features(chosen) - features(rejected) for chosen, rejected in labels])
    counts = np.zeros((members, len(labels)))
    for member in counts:
        for _ in labels:
            member[rng.randrange(len(labels))] += 1
    return Committee(fit_members(differences, counts), len(labels))


def pick_committee(
    candidates: Sequence[str], rng: random.Random, committee: Committee | None = None
) -> tuple[int, int]:
    """The pair (i < j) whose preference probabilities vary most across the committee's members; ties (every pair
    while nothing is learnt) are broken at random."""
    pairs = list(itertools.combinations(range(len(candidates)), 2))
    if committee is None or committee.labels == 0:
        return rng.choice(pairs)
    vectors = np.stack([features(text) for text in candidates])
    spread = [float(np.var(_sigmoid(committee.weights @ (vectors[i] - vectors[j])))) for i, j in pairs]
    best = max(spread)
    return rng.choice([pair for pair, s in zip(pairs, spread, strict=True) if s >= best - 1e-12])
