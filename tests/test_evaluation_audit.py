"""Label audits on hand-made votes with known biases, and agreement on published worked examples."""

import math

import pytest
from scipy.stats import binomtest

from evaluation.audit import Vote, agreement, krippendorff_alpha_nominal, length_bias, position_bias, rates


def votes(labeler: str, **counts: int) -> list[Vote]:
    """`counts` votes of each choice by `labeler`, all on equal-length sides."""
    return [Vote(labeler, choice, 10, 10) for choice, n in counts.items() for _ in range(n)]


def test_position_bias_flags_a_labeler_who_favours_one_side():
    data = votes("ada", left=34, right=14, tie=5, skip=2) + votes("bob", left=26, right=22)
    data += votes("cy", left=14, right=34) + votes("dee", tie=3)
    ada, bob, cy, dee = position_bias(data)
    assert (ada.who, ada.n, ada.rate) == ("ada", 48, pytest.approx(34 / 48))
    assert ada.p_value == pytest.approx(binomtest(34, 48).pvalue) and ada.p_value < 0.01
    ci = binomtest(34, 48).proportion_ci(0.95, method="wilson")
    assert (ada.low, ada.high) == pytest.approx((ci.low, ci.high))
    assert ada.plain.startswith("ada picks the left answer 71% of the time (n=48, p=0.0055): likely a position bias")
    assert "toward the left" in ada.plain and "toward the right" in cy.plain
    assert bob.p_value > 0.05 and bob.plain.endswith("no sign of a position bias.")
    assert dee.n == 0 and math.isnan(dee.rate) and dee.plain == "dee has no left/right votes yet."


def test_length_bias_counts_only_decisive_votes_on_unequal_lengths():
    data = [Vote("ada", "left", 200, 100)] * 25 + [Vote("bob", "right", 50, 90)] * 15  # longer wins: 40
    data += [Vote("ada", "left", 50, 100)] * 6 + [Vote("bob", "right", 90, 30)] * 4  # shorter wins: 10
    data += [Vote("ada", "left", 80, 80)] * 7 + [Vote("ada", "tie", 10, 300)] * 9  # ignored
    result = length_bias(data)
    assert (result.who, result.n, result.rate) == ("everyone", 50, pytest.approx(0.8))
    assert result.p_value == pytest.approx(binomtest(40, 50).pvalue)
    assert result.plain.startswith("The longer answer wins 80% of the time (n=50, p=2.4e-05): labels favour longer")
    fair = length_bias([Vote("ada", "left", 200, 100), Vote("ada", "right", 200, 100)] * 5)
    assert fair.rate == 0.5 and fair.plain.endswith("no sign of a length bias.")
    assert length_bias([Vote("ada", "left", 200, 100)] * 3).plain.endswith("too few votes to tell yet.")
    assert length_bias([]).n == 0


def test_rates_are_shares_of_all_votes():
    ada, eve = rates(votes("eve", left=2, right=1, tie=3, both_bad=2, skip=2) + votes("ada", left=4))
    assert (eve.labeler, eve.n, eve.tie, eve.both_bad, eve.skip) == ("eve", 10, 0.3, 0.2, 0.2)
    assert eve.plain.startswith("eve: 30% ties, 20% both bad, 20% skipped (n=10). Most of these votes make no DPO pair")
    assert (ada.labeler, ada.tie, ada.plain) == ("ada", 0.0, "ada: 0% ties, 0% both bad, 0% skipped (n=4).")


def test_votes_reject_unknown_choices():
    with pytest.raises(ValueError, match="choice must be one of"):
        Vote("ada", "up")
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        Vote("ada", "left", -1, 3)


def cohen_example() -> tuple[dict, dict]:
    """Wikipedia's Cohen's kappa example: 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa 0.4."""
    cells = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    completions = {i: (f"gen_{2 * i}", f"gen_{2 * i + 1}") for i in range(len(cells))}
    pick = {"yes": 0, "no": 1}
    labels = {i: {"ann": completions[i][pick[a]], "ben": completions[i][pick[b]]} for i, (a, b) in enumerate(cells)}
    return labels, completions


def test_cohens_kappa_and_alpha_match_the_textbook_two_rater_example():
    labels, completions = cohen_example()
    result = agreement(labels, completions)
    assert result.kappa[("ann", "ben")] == pytest.approx(0.4) and result.shared[("ann", "ben")] == 50
    # Krippendorff by hand: o(yes,yes)=40, o(no,no)=30, o(yes,no)=o(no,yes)=15; 1 - 99*30 / (2*55*45) = 0.4.
    assert result.alpha == pytest.approx(0.4)
    assert result.with_majority == {"ann": (pytest.approx(0.7), 50), "ben": (pytest.approx(0.7), 50)}
    first = {i: pair[0] for i, pair in completions.items()}
    canonical = {
        i: {who: "first" if lab == first[i] else "second" for who, lab in by.items()} for i, by in labels.items()
    }
    assert agreement(canonical).kappa[("ann", "ben")] == pytest.approx(0.4)


def test_per_item_ids_without_completions_inflate_kappa_toward_raw_agreement():
    labels, _ = cohen_example()
    assert agreement(labels).kappa[("ann", "ben")] > 0.65  # raw agreement is 0.7; the true kappa is 0.4


def test_krippendorffs_alpha_matches_his_worked_examples():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": nominal, 4 observers, 12 units with
    # missing values -> alpha = 0.743; binary, 2 observers, 10 units -> alpha = 0.095.
    rows = {
        "A": "1 2 3 3 2 1 4 1 2 . . .",
        "B": "1 2 3 3 2 2 4 1 2 5 . 3",
        "C": ". 3 3 3 2 3 4 2 2 5 1 .",
        "D": "1 2 3 3 2 4 4 1 2 5 1 .",
    }
    labels = {u: {who: row.split()[u] for who, row in rows.items() if row.split()[u] != "."} for u in range(12)}
    result = agreement(labels)
    assert result.alpha == pytest.approx(0.743, abs=5e-4)
    assert result.plain.startswith("Krippendorff's alpha is 0.74 over 11 shared items: labelers agree moderately")
    binary = zip("0100000010", "1110010000", strict=True)
    assert krippendorff_alpha_nominal(binary) == pytest.approx(0.095, abs=5e-4)


def test_majority_agreement_ignores_items_without_a_single_majority():
    labels = {
        1: {"ada": "gen_1", "bob": "gen_1", "cy": "gen_1"},
        2: {"ada": "gen_3", "bob": "gen_4", "cy": "gen_4"},
        3: {"ada": "tie", "bob": "gen_5", "cy": "both_bad"},
        4: {"ada": "gen_7", "bob": "skip"},
    }
    result = agreement(labels)
    # ada: item 1 agrees, item 2 disagrees, item 3 has no majority among bob/cy, item 4 has no other label.
    assert result.with_majority["ada"] == (0.5, 2)
    # bob: item 1 with ada+cy (agree), 2: ada/cy split (skip), 3: ada/cy split (skip).
    assert result.with_majority["bob"] == (1.0, 1)
    assert result.shared == {("ada", "bob"): 3, ("ada", "cy"): 3, ("bob", "cy"): 3}


def test_agreement_needs_side_free_labels_and_overlap():
    with pytest.raises(ValueError, match="map it back to the chosen completion"):
        agreement({1: {"ada": "left", "bob": "gen_2"}})
    with pytest.raises(ValueError, match="not one of its completions"):
        agreement({1: {"ada": "gen_9", "bob": "gen_2"}}, {1: ("gen_1", "gen_2")})
    lonely = agreement({1: {"ada": "gen_1"}, 2: {"bob": "gen_3"}})
    assert math.isnan(lonely.alpha) and math.isnan(lonely.kappa[("ada", "bob")])
    assert lonely.plain.startswith("Not enough overlap")
