"""The reward committee (labeling/committee.py) on hand-made labels: it learns a taste, its members disagree
where the labels have not settled something, and the pair it shows is that one, never two near-copies."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from labeling.committee import Committee, features, fit_committee, pick_committee
from labeling.selection import PairSelection, choose

CASUAL = [
    ("You can do it, you'll see.", "One may accomplish this objective."),
    ("You'll love it, trust me.", "The item is considered satisfactory."),
    ("Don't worry, you've got this.", "Concern is not warranted in this instance."),
    ("Here's what you do: try again.", "The recommended procedure is repetition."),
] * 3


def test_features_are_the_same_for_the_same_words_and_differ_with_words_and_length():
    assert np.array_equal(features("The cat sat."), features("the CAT sat."))
    assert np.linalg.norm(features("a b c") - features("x y z")) > 1.0
    assert features("word " * 40)[-1] > features("word")[-1], "the last feature grows with the length"
    assert not features("").any()


def test_with_no_labels_every_pair_ties_and_the_pick_is_random():
    empty = fit_committee([], random.Random(0))
    assert empty.labels == 0 and not empty.weights.any()
    rng = random.Random(0)
    picks = Counter(pick_committee(["a", "b", "c", "d"], rng, empty) for _ in range(3000))
    assert len(picks) == 6 and all(400 < n < 600 for n in picks.values()), picks


def test_the_committee_learns_a_taste_from_the_labels():
    committee = fit_committee(CASUAL, random.Random(0))
    assert committee.labels == len(CASUAL) and committee.weights.shape[0] == 8
    assert committee.preference("You'll see, you can do it.", "This objective is accomplished.").mean() > 0.6
    assert committee.preference("This objective is accomplished.", "You'll see, you can do it.").mean() < 0.4


def test_it_shows_the_pair_the_labels_have_not_settled_rather_than_one_they_have_or_near_copies():
    # Casual beats formal in twelve labels: every member agrees. Lists against prose came up once: the members
    # whose resample left that label out know nothing about it, so they disagree there.
    labels = [*CASUAL, ("- one\n- two\n- three", "One, two and three.")]
    committee = fit_committee(labels, random.Random(0))
    candidates = [
        "You'll do fine, you've got this.",  # 0: casual
        "One shall accomplish this objective.",  # 1: formal: (0, 1) is settled
        "- eggs\n- milk\n- flour",  # 2: a list
        "Eggs, milk and flour.",  # 3: prose: (2, 3) is not
        "Eggs, milk and flour!",  # 4: a near-copy of 3
    ]
    pick = pick_committee(candidates, random.Random(0), committee)
    assert pick == (2, 3)
    settled, open_, copies = (np.var(committee.preference(candidates[i], candidates[j])) for i, j in
                              [(0, 1), (2, 3), (3, 4)])  # fmt: skip
    assert open_ > settled and open_ > copies


def test_choose_records_committee_and_keeps_the_random_control_slice():
    committee = fit_committee(CASUAL, random.Random(0))
    selection = PairSelection(candidates=4, strategy="committee", control_share=0.25)
    rng = random.Random(1)
    candidates = ["You can.", "One may.", "You'll see.", "It is so."]
    how = Counter(choose(candidates, selection, rng, committee)[2] for _ in range(2000))
    assert set(how) == {"committee", "control"} and 400 < how["control"] < 600
    with pytest.raises(ValueError, match="needs at least 3 candidates"):
        PairSelection(candidates=2, strategy="committee")


def test_a_committee_fits_the_newest_labels_only():
    old, new = ("formal answer", "casual answer"), ("casual answer", "formal answer")
    committee = fit_committee([old] * 20 + [new] * 10, random.Random(0), newest=10)
    assert committee.labels == 10 and isinstance(committee, Committee)
    assert committee.preference("casual answer", "formal answer").min() > 0.5
