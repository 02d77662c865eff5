"""Pair selection (labeling/selection.py): each strategy picks what it should on hand-made candidates, and the
control slice is random, of the right share, and recorded as "control"."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from labeling.selection import PairSelection, choose, distance, pick_random, pick_spread

SPREAD = PairSelection(candidates=4, strategy="spread", control_share=0.0)


def test_two_candidates_at_random_are_both_shown_without_drawing_from_the_rng():
    rng = random.Random(3)
    state = rng.getstate()
    assert choose(["a b", "c d"], PairSelection(), rng) == (0, 1, "random")
    assert rng.getstate() == state, "the default draws nothing, so the sides and pairs come out as before"


def test_random_picks_two_distinct_candidates_uniformly():
    rng = random.Random(0)
    picks = Counter(pick_random(["a", "b", "c", "d"], rng) for _ in range(6000))
    assert set(picks) == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}
    assert all(900 < n < 1100 for n in picks.values()), picks


def test_distance_is_zero_for_copies_and_grows_with_different_words_and_lengths():
    assert distance("The cat sat.", "the cat sat.") == 0.0
    assert distance("", "") == 0.0
    assert distance("a b c", "x y z") == 0.5  # no shared words, same length
    assert distance("a b", "a b c d") == pytest.approx((1 - 3 / 7 + 0.5) / 2)  # {a, b, a b} of 7 features shared
    assert distance("yes", "") == 1.0


def test_spread_shows_the_two_most_unlike_candidates():
    candidates = [
        "Paris is the capital of France.",
        "Paris is the capital of France!",
        "The capital of France is Paris.",
        "I would rather not say, but you could look it up in an atlas or ask someone nearby.",
    ]
    assert choose(candidates, SPREAD, random.Random(0)) == (0, 3, "spread")


def test_spread_breaks_ties_by_the_first_pair():
    assert pick_spread(["a", "b", "c"], random.Random(0)) == (0, 1)


def test_spread_never_shows_near_copies_when_an_unlike_candidate_exists():
    candidates = ["Sure, here it is.", "Sure, here it is.", "Sure, here it is!", "No."]
    i, j, _ = choose(candidates, SPREAD, random.Random(0))
    assert 3 in (i, j)


def test_the_control_slice_is_random_and_its_share_is_right():
    selection = PairSelection(candidates=4, strategy="spread", control_share=0.2)
    candidates = ["one two", "one two three", "four five six seven", "eight"]
    rng = random.Random(11)
    picks = [choose(candidates, selection, rng) for _ in range(5000)]
    control = [(i, j) for i, j, how in picks if how == "control"]
    assert abs(len(control) / len(picks) - 0.2) < 0.02
    assert {(i, j) for i, j, how in picks if how == "spread"} == {pick_spread(candidates, rng)}
    assert len(set(control)) == 6, "control pairs are drawn from every pair, not the strategy's"
    # seeded: the same draws again
    rng = random.Random(11)
    assert [choose(candidates, selection, rng) for _ in range(5000)] == picks


def test_random_has_no_control_slice():
    selection = PairSelection(candidates=4, control_share=1.0)
    assert {choose(["a", "b", "c", "d"], selection, random.Random(i))[2] for i in range(50)} == {"random"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"candidates": 1}, "candidates must be from 2 to 8"),
        ({"candidates": 9}, "candidates must be from 2 to 8"),
        ({"strategy": "best"}, "strategy must be one of random, spread"),
        ({"strategy": "spread"}, "needs at least 3 candidates"),
        ({"candidates": 4, "strategy": "spread", "control_share": 1.5}, "control_share must be from 0 to 1"),
    ],
)
def test_a_selection_that_cannot_work_is_refused_with_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PairSelection(**kwargs)


def test_a_pair_needs_two_candidates():
    with pytest.raises(ValueError, match="at least 2 candidates"):
        choose(["only"], PairSelection(), random.Random(0))
