"""Held-out accuracy per pair-selection slice on hand-made counts: Wilson intervals and Fisher's exact test
against published values and scipy.

    python -m pytest tests/test_evaluation_selection.py -q
"""

import itertools

import pytest
from scipy.stats import fisher_exact as scipys_fisher_exact

from evaluation.proportions import fisher_exact, wilson_interval


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
