"""Labels a strategy needs to match random at 40: interpolation, repeats, and the per-strategy summary."""

import pytest

from evaluation.label_savings import compare_strategies, labels_to_match, over_repeats


def test_labels_to_match_interpolates_between_the_counts_measured():
    curve = {20: 0.55, 40: 0.61, 80: 0.70}
    assert labels_to_match(curve, 0.61) == 40
    assert labels_to_match(curve, 0.64) == pytest.approx(40 + 0.03 / 0.09 * 40)
    assert labels_to_match(curve, 0.58) == pytest.approx(30)
    assert labels_to_match(curve, 0.50) == 20, "already there at the fewest: that count, an upper bound"
    assert labels_to_match(curve, 0.71) is None, "never reached within what was measured"
    assert labels_to_match({40: 0.6, 20: 0.5}, 0.55) == pytest.approx(30), "order of the points does not matter"
    # a dip after the target is reached does not move the first crossing
    assert labels_to_match({20: 0.5, 40: 0.7, 80: 0.6}, 0.6) == pytest.approx(30)
    with pytest.raises(ValueError, match="at least one"):
        labels_to_match({}, 0.5)


def test_over_repeats_treats_unreached_as_more_than_measured():
    assert over_repeats([30.0, 50.0, 40.0]) | {"per_repeat": None} == {
        "median": 40.0, "low": 30.0, "high": 50.0, "per_repeat": None, "reached": 3
    }  # fmt: skip
    one_short = over_repeats([30.0, None, 40.0])
    assert (one_short["median"], one_short["low"], one_short["high"], one_short["reached"]) == (40.0, 30.0, None, 2)
    assert over_repeats([30.0, None, None])["median"] is None
    assert over_repeats([30.0, 50.0])["median"] == 40.0
    assert over_repeats([30.0, None])["median"] is None
    assert over_repeats([None, None]) | {"per_repeat": None} == {
        "median": None, "low": None, "high": None, "per_repeat": None, "reached": 0
    }  # fmt: skip


def _runs(strategy, taste, curves, nll=1.3):
    return [
        {"strategy": strategy, "taste": taste, "repeat": r, "labels": n, "win_rate": w, "nll_round": nll}
        for r, curve in enumerate(curves)
        for n, w in curve.items()
    ]


def test_a_strategy_that_reaches_random_s_40_label_win_rate_with_20_saves_half():
    runs = (
        _runs("random", "plain", [{20: 0.50, 40: 0.60, 80: 0.70}, {20: 0.52, 40: 0.62, 80: 0.70}, {20: 0.54, 40: 0.64}])
        + _runs("spread", "plain", [{20: 0.62, 40: 0.66}, {20: 0.64, 40: 0.70}, {20: 0.61, 40: 0.65}], nll=1.25)
        + _runs("random", "casual", [{20: 0.60, 40: 0.70}] * 3)
        + _runs("spread", "casual", [{20: 0.55, 40: 0.60}] * 3, nll=1.25)
    )
    found = compare_strategies(runs, match=40)
    assert list(found) == ["random", "spread"]
    plain = found["spread"]["tastes"]["plain"]
    assert plain["target"] == pytest.approx(0.62) and plain["median"] == 20 and plain["reached"] == 3
    assert found["random"]["tastes"]["plain"]["per_repeat"] == pytest.approx([48, 40, 36]), "random scatters round 40"
    assert found["random"]["tastes"]["casual"]["median"] == 40
    assert found["spread"]["tastes"]["casual"]["median"] is None, "spread never reaches casual's 0.70"
    assert found["spread"]["labels_to_match_random_40"] is None and found["spread"]["saving"] is None
    assert found["spread"]["worse_than_reference"] == ["casual"]
    assert found["random"]["labels_to_match_random_40"] == 40 and found["random"]["saving"] == 0
    assert found["random"]["worse_than_reference"] == []
    assert found["spread"]["nll_round"] == pytest.approx(1.25) and found["random"]["nll_round"] == pytest.approx(1.3)

    only_plain = compare_strategies([r for r in runs if r["taste"] == "plain"], match=40)
    assert only_plain["spread"]["labels_to_match_random_40"] == 20
    assert only_plain["spread"]["saving"] == 0.5  # 1 - 20 / 40
    assert only_plain["spread"]["worse_than_reference"] == []


def test_random_trained_only_at_the_count_it_is_matched_at_is_still_the_bar_a_strategy_must_clear():
    random_at_40 = _runs("random", "plain", [{40: 0.60}, {40: 0.70}, {40: 0.62}])  # target 0.64: 40, more, more
    slower = _runs("spread", "plain", [{20: 0.50, 40: 0.60, 80: 0.68}] * 3)  # 0.64 at 60 labels
    found = compare_strategies(random_at_40 + slower, match=40)
    assert found["random"]["tastes"]["plain"]["median"] is None, "two of three repeats fall short of their mean"
    assert found["random"]["worse_than_reference"] == [], "never worse than itself"
    assert found["spread"]["tastes"]["plain"]["median"] == pytest.approx(60)
    assert found["spread"]["worse_than_reference"] == ["plain"], "needs more than the 40 random needs by definition"
    faster = compare_strategies(random_at_40 + _runs("spread", "plain", [{20: 0.66, 40: 0.7}] * 3), match=40)
    assert faster["spread"]["worse_than_reference"] == [] and faster["spread"]["saving"] == 0.5


def test_comparing_needs_random_at_the_label_count_it_is_matched_at():
    with pytest.raises(ValueError, match="add it to --selection"):
        compare_strategies(_runs("spread", "plain", [{20: 0.6, 40: 0.7}]))
    with pytest.raises(ValueError, match="add 40 to --labels"):
        compare_strategies(_runs("random", "plain", [{20: 0.6, 80: 0.7}]) + _runs("spread", "plain", [{20: 0.6}]))
