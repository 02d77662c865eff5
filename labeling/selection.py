"""Which two of a prompt's sampled candidates a labeler is shown: pure strategies behind one small protocol, and
the random control slice that keeps every strategy measurable against random.

    selection = PairSelection(candidates=4, strategy="spread", control_share=0.2)
    i, j, how = choose(["Sure! ...", "No.", "Sure! ...", "Here is ..."], selection, random.Random(0))
    # how: "spread", or "control" for the share drawn at random anyway; the vote records it

With 2 candidates (the default) there is nothing to choose: both are shown, as "random". A strategy that beats
random has to show it on labels collected alongside random ones, so whenever a strategy other than random is on,
`control_share` of the pairs are drawn at random and recorded as "control" (Muldrew et al. 2024 and "Random Is
Hard to Beat", 2026, both compare against random pairs labeled the same way).

Strategies:
- random: two distinct candidates, uniformly (with 2 candidates, both, without drawing from the RNG).
- spread: the two that differ most by `distance` (word and word-2-gram Jaccard distance, averaged with the
  relative difference in length); two near-copies make a tie likely for any taste, two unlike answers rarely do.
  Deterministic: of equally distant pairs the first (lowest i, then j) wins.
- committee: the pair a small committee of reward models, fitted to the labels so far, disagrees on most
  (labeling/committee.py); the sampler refits it from the store's decided labels before a batch when new ones
  have come in. Random until the first label.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labeling.committee import Committee, pick_committee

MAX_CANDIDATES = 8  # a batch samples candidates x prompts rows: more would cost labelers their queue

# A strategy: the indexes (i < j) of the two candidates to show. Pure: it may draw from `rng`, nothing else (one
# in LEARNS_FROM_LABELS is also given the labels' Committee).
Strategy = Callable[[Sequence[str], random.Random], tuple[int, int]]


def pick_random(candidates: Sequence[str], rng: random.Random) -> tuple[int, int]:
    """Two distinct candidates, uniformly; with exactly two, both (and the RNG is not drawn from)."""
    if len(candidates) == 2:
        return 0, 1
    i, j = rng.sample(range(len(candidates)), 2)
    return min(i, j), max(i, j)


def features(text: str) -> frozenset[str]:
    """A completion's lower-cased words and word 2-grams (joined by a space), as a set."""
    words = text.lower().split()
    return frozenset(words) | frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def distance(a: str, b: str) -> float:
    """How unlike two completions are, in [0, 1]: the mean of the Jaccard distance of their `features` and the
    relative difference of their lengths in words, |la - lb| / max(la, lb). 0: the same words in the same
    number; two empty texts are 0 apart."""
    fa, fb = features(a), features(b)
    union = fa | fb
    jaccard = 1.0 - len(fa & fb) / len(union) if union else 0.0
    la, lb = len(a.split()), len(b.split())
    length = abs(la - lb) / max(la, lb) if max(la, lb) else 0.0
    return (jaccard + length) / 2


def pick_spread(candidates: Sequence[str], rng: random.Random) -> tuple[int, int]:
    """The two candidates farthest apart by `distance`; ties go to the first pair (lowest i, then j)."""
    pairs = itertools.combinations(range(len(candidates)), 2)
    return max(pairs, key=lambda ij: (distance(candidates[ij[0]], candidates[ij[1]]), -ij[0], -ij[1]))


STRATEGIES: dict[str, Strategy] = {"random": pick_random, "spread": pick_spread, "committee": pick_committee}
LEARNS_FROM_LABELS = frozenset({"committee"})


@dataclass(frozen=True)
class PairSelection:
    """How the sampler picks the pair shown: `candidates` completions per prompt, two chosen by `strategy`, and
    `control_share` of them at random instead while the strategy is not random."""

    candidates: int = 2
    strategy: str = "random"
    control_share: float = 0.2

    def __post_init__(self) -> None:
        if not 2 <= self.candidates <= MAX_CANDIDATES:
            raise ValueError(f"candidates must be from 2 to {MAX_CANDIDATES}, got {self.candidates}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy != "random" and self.candidates < 3:
            raise ValueError(
                f"the {self.strategy!r} selection needs at least 3 candidates to choose from (e.g. --candidates 4); "
                "with 2, both are always shown"
            )
        if not 0.0 <= self.control_share <= 1.0:
            raise ValueError(f"control_share must be from 0 to 1, got {self.control_share}")


def choose(
    candidates: Sequence[str], selection: PairSelection, rng: random.Random, committee: Committee | None = None
) -> tuple[int, int, str]:
    """The two candidates to show (i < j) and how they were chosen: the strategy's name, or "control" when the
    control slice drew them at random. The control draw happens only while the strategy is not random, so the
    default (random, 2 candidates) draws nothing from `rng`. `committee`: the labels' (for LEARNS_FROM_LABELS)."""
    if len(candidates) < 2:
        raise ValueError(f"a pair needs at least 2 candidates, got {len(candidates)}")
    if selection.strategy != "random" and rng.random() < selection.control_share:
        return *pick_random(candidates, rng), "control"
    learnt = (committee,) if selection.strategy in LEARNS_FROM_LABELS else ()
    return *STRATEGIES[selection.strategy](candidates, rng, *learnt), selection.strategy
