"""Held-out accuracy per pair-selection slice on hand-made counts: Wilson intervals and Fisher's exact test
against published values and scipy, the strategy-against-control sentence, and the counts summed over rounds.

    python -m pytest tests/test_evaluation_selection.py -q
"""

import itertools

import pytest
from scipy.stats import fisher_exact as scipys_fisher_exact

from evaluation.proportions import fisher_exact, wilson_interval
from evaluation.selection import compare_selection, slice_accuracy, sum_slices


@pytest.mark.parametrize(  # Newcombe 1998, "Two-sided confidence intervals for the single proportion", Table I
    "successes, n, low, high",
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombes_table(successes, n, low, high):
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


def test_fisher_exact_matches_the_tea_tasting_lady_and_scipy():
    assert fisher_exact(3, 1, 1, 3) == pytest.approx(34 / 70)  # Fisher 1935: 3 of 4 cups right each way
    for a, b, c, d in itertools.product(range(0, 7, 2), range(0, 6), range(0, 5), range(1, 8, 3)):
        expected = scipys_fisher_exact([[a, b], [c, d]]).pvalue
        assert fisher_exact(a, b, c, d) == pytest.approx(expected, rel=1e-9), (a, b, c, d)
    with pytest.raises(ValueError, match="counts must be >= 0"):
        fisher_exact(1, -1, 0, 0)


def test_a_small_difference_is_called_not_significant_and_asks_for_more_labels():
    slices = {"spread": {"n": 12, "correct": 9, "margin": 0.3}, "control": {"n": 3, "correct": 2, "margin": 0.1}}
    (found,) = compare_selection(slices)
    assert (found.strategy.n, found.strategy.correct, found.control.n, found.control.correct) == (12, 9, 3, 2)
    assert (found.strategy.low, found.strategy.high) == pytest.approx((0.4677, 0.9111), abs=5e-5)
    assert (found.control.low, found.control.high) == pytest.approx((0.2077, 0.9385), abs=5e-5)
    assert found.difference == pytest.approx(0.75 - 2 / 3) and found.p_value == pytest.approx(1.0)
    assert not found.significant
    assert found.text == (
        "Pairs picked by spread: 9 of 12 right (0.75 [0.47, 0.91], mean margin +0.30); random control: 2 of 3 "
        "(0.67 [0.21, 0.94], mean margin +0.10); the difference, +0.08, is not significant at 5% (Fisher's exact "
        "test, p = 1) — label more before judging the strategy."
    )


def test_a_large_difference_is_called_significant_either_way():
    better = {"spread": {"n": 40, "correct": 36}, "control": {"n": 40, "correct": 20}}
    (found,) = compare_selection(better)
    assert found.significant and found.p_value == pytest.approx(scipys_fisher_exact([[36, 4], [20, 20]]).pvalue)
    assert found.text.endswith("is significant at 5% (Fisher's exact test, p = 0.00017): spread's pairs were ranked "
                               "right more often.")  # fmt: skip
    worse = {"spread": {"n": 40, "correct": 20}, "control": {"n": 40, "correct": 36}}
    (found,) = compare_selection(worse)
    assert found.significant and found.difference == pytest.approx(-0.4)
    assert found.text.endswith("spread's pairs were ranked right less often.")


def test_without_a_strategy_there_is_nothing_to_say():
    assert compare_selection({}) == []
    assert compare_selection({"random": {"n": 10, "correct": 7}, "edit": {"n": 2, "correct": 2}}) == []


def test_a_strategy_without_held_out_control_pairs_says_so():
    (found,) = compare_selection({"spread": {"n": 4, "correct": 3}, "random": {"n": 5, "correct": 1}})
    assert found.control is None and found.p_value is None and not found.significant
    assert "no random control pair was held out" in found.text and "label more" in found.text


def test_slices_sum_over_rounds_with_the_margin_averaged_over_pairs():
    rounds = [
        {"spread": {"n": 4, "correct": 3, "accuracy": 0.75, "margin": 1.0}},
        None,  # a KTO round records no slices
        {"spread": {"n": 2, "correct": 1, "accuracy": 0.5, "margin": -0.5}, "control": {"n": 1, "correct": 0}},
    ]
    assert sum_slices(rounds) == {
        "spread": {"n": 6, "correct": 4, "margin": pytest.approx(0.5)},
        "control": {"n": 1, "correct": 0, "margin": None},
    }
    with pytest.raises(ValueError, match="needs 0 <= correct <= n"):
        slice_accuracy("spread", {"n": 2, "correct": 3})
