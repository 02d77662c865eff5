"""Intervals for a proportion, in plain Python (no scipy), so the app can show them without loading scipy.

from evaluation.proportions import fisher_exact, wilson_interval
wilson_interval(9, 12)  # (0.4677..., 0.9111...)
fisher_exact(9, 3, 2, 1)  # 1.0: 9 of 12 against 2 of 3 is no evidence
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) for `successes` out of `n`; returns (low, high), (0, 1) when n == 0.

    Unlike scipy's `binomtest(...).proportion_ci`, `successes` may be fractional (a tie counts 1/2).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test on the 2×2 table [[a, b], [c, d]] (e.g. right and wrong in two
    groups): the chance, with the margins fixed, of a table no likelier than this one. Exact, with integers, so
    equally likely tables count whole; scipy's `fisher_exact` gives the same. 1.0 when a row or column is empty.
    """
    if min(a, b, c, d) < 0:
        raise ValueError(f"counts must be >= 0, got {[[a, b], [c, d]]}")
    row, other_row, column = a + b, c + d, a + c

    def weight(x: int) -> int:  # tables with x in the top-left cell, times comb(n, column)
        return math.comb(row, x) * math.comb(other_row, column - x)

    observed = weight(a)
    tables = [weight(x) for x in range(max(0, column - other_row), min(row, column) + 1)]
    return min(1.0, sum(w for w in tables if w <= observed) / sum(tables))
