"""What the Audit tab says, from hand-made votes with known biases: the table per labeler and round, "not enough
votes yet" below the threshold, plain-language warnings, and agreement between labelers.

    python -m pytest tests/test_audit_views.py -q
"""

from scipy.stats import binomtest

import evaluation.audit
from evaluation.audit import Vote
from ui import audit


def lefty(n: int, batch: str = "base") -> list[Vote]:
    """`n` votes that always pick the left side, the longer answer on the left every other time."""
    return [Vote("ana", "left", 40 if i % 2 else 10, 10 if i % 2 else 40, i, batch) for i in range(n)]


def longy(n: int) -> list[Vote]:
    """`n` votes that always pick the longer answer, placed left every other time."""
    return [
        Vote("ben", "left" if i % 2 else "right", 40 if i % 2 else 10, 10 if i % 2 else 40, i, "base") for i in range(n)
    ]


def test_the_table_has_a_row_per_labeler_and_round_and_all_rounds_when_several():
    votes = lefty(12) + lefty(10, "round_001") + longy(20) + [Vote("cy", "tie", 5, 5, 1, "base")] * 3
    rows = audit.audit_rows(votes)
    assert [(r["labeler"], r["round"], r["votes"]) for r in rows] == [
        ("ana", "base", 12),
        ("ana", "round_001", 10),
        ("ana", "all rounds", 22),
        ("ben", "base", 20),
        ("cy", "base", 3),
    ]
    ana = rows[2]
    assert (ana["picks left"], ana["p (left)"]) == ("100%", f"{binomtest(22, 22).pvalue:.2g}")
    assert (ana["picks longer"], ana["p (longer)"]) == ("50%", "1")
    assert (ana["ties"], ana["both bad"], ana["skips"]) == ("0%", "0%", "0%")
    ben = rows[3]
    assert (ben["picks left"], ben["picks longer"], ben["p (longer)"]) == ("50%", "100%", "1.9e-06")
    cy = rows[4]
    assert cy["picks left"] == cy["picks longer"] == cy["ties"] == "not enough votes yet" and cy["p (left)"] == ""
    assert list(rows[0]) == list(audit.AUDIT_COLUMNS)


def test_biases_are_said_in_plain_words_only_with_enough_votes():
    summary = audit.audit_summary(lefty(12) + longy(20) + lefty(9, "round_001"))
    assert summary.startswith("**41 votes** by 2 labelers.")
    assert (
        "- ⚠️ **ana** (base) picks the left completion 100% of the time (n=12, p = 0.00049): a position bias toward "
        "the left." in summary
    )
    assert "**ben** (base) picks the longer completion 100% of the time (n=20, p = 1.9e-06): a length bias" in summary
    assert "(round_001)" not in summary, "9 votes: not enough to say"
    assert "**ana** (all rounds) picks the left completion 100%" in summary
    righty = [Vote("dee", "right", 10, 10, i, "base") for i in range(10)]
    assert "a position bias toward the right" in audit.audit_summary(righty)
    ties = [Vote("eve", c, 10, 10, i, "base") for i, c in enumerate(["tie"] * 6 + ["skip"] * 4)]
    assert "**eve** (base): 100% of votes are ties, both bad or skips" in audit.audit_summary(ties)
    fair = [Vote("fay", "left" if i % 2 else "right", 10 + i % 3, 10, i, "base") for i in range(20)]
    assert audit.audit_summary(fair) == "**20 votes** by 1 labeler. No bias found in groups of 10 votes or more."
    assert audit.audit_summary([]).startswith("**No votes yet.**")


def test_agreement_gives_kappa_per_pair_of_labelers_alpha_and_the_majority():
    # Wikipedia's two-rater example (kappa 0.4) on 50 pairs, and cy on the first 3 of them only
    cells = [("a", "a")] * 20 + [("a", "b")] * 5 + [("b", "a")] * 10 + [("b", "b")] * 15
    completions = {str(i): (f"gen_{2 * i}", f"gen_{2 * i + 1}") for i in range(50)}
    pick = {"a": 0, "b": 1}
    labels = {
        str(i): {"ann": completions[str(i)][pick[x]], "ben": completions[str(i)][pick[y]]}
        for i, (x, y) in enumerate(cells)
    }
    for i in range(3):
        labels[str(i)]["cy"] = "tie"
    text, rows = audit.agreement_view(labels, completions)
    assert rows[0] == {"labelers": "ann & ben", "Cohen's κ": "0.40", "shared pairs": 50}
    assert rows[1] == {"labelers": "ann & cy", "Cohen's κ": "not enough shared pairs yet", "shared pairs": 3}
    assert text.startswith("Krippendorff's α = **0.")
    assert "over 50 doubly-labeled pairs" in text
    assert "- cy agrees with the others' majority on 3 pairs: not enough votes yet" in text
    # ann against ben alone on pairs 3-49 (on 0-2 ben and cy split): 17 + 15 of 47 agree
    assert "- ann agrees with the others' majority on 68% of 47 pairs" in text
    few, rows = audit.agreement_view({"1": {"ann": "tie", "ben": "tie"}}, {"1": ("gen_1", "gen_2")})
    assert few.startswith("Krippendorff's α: not enough doubly-labeled pairs yet (1 of 10).")
    assert audit.agreement_view({}, {}) == ("Krippendorff's α: not enough doubly-labeled pairs yet (0 of 10).", [])


def test_a_second_look_says_it_does_not_train_and_the_threshold_matches_the_statistics():
    message = audit.second_look_message(3, "left", 17)
    assert message.startswith("Saved second look #3 (left)") and "does not train" in message
    assert audit.MIN_VOTES == evaluation.audit.MIN_VOTES
