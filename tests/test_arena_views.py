"""What the Arena tab says, from hand-made results: win rates in words, the reveal, the leaderboard and matrix.

python -m pytest tests/test_arena_views.py -q
"""

import subprocess
import sys
from pathlib import Path

from evaluation import Battle, Strength, win_matrix, win_rate
from ui import views


def test_a_win_rate_is_said_with_its_interval_or_as_not_enough_battles_yet():
    enough = views.win_rate_line("round_002", "base", 6, 2, 2, win_rate(6, 2, 2), min_battles=10)
    assert enough.startswith("**round_002** vs base: round_002 wins **70%** (95% interval ")
    assert enough.endswith("of 10 battles (6 won, 2 lost, 2 tied).")
    few = views.win_rate_line("round_002", "base", 3, 1, 0, win_rate(3, 1, 0), min_battles=10)
    assert few == "**round_002** vs base: not enough battles yet (4 of 10; 3 won, 1 lost, 0 tied)."
    assert "half a win" in views.TIES_AS_HALF


def test_names_come_only_with_the_reveal():
    line = views.battle_line(7, queued=2)
    assert line.startswith("Battle #7 · 2 more ready") and "revealed after your vote" in line
    assert views.reveal_line(7, "right", "base", "round_002") == (
        "Saved battle #7: you voted **B**. A was **base**, B was **round_002**."
    )
    assert "you voted **both bad**" in views.reveal_line(8, "both_bad", "round_002", "base")


def test_leaderboard_plot_and_matrix_rows():
    strengths = [Strength("round_001", 1080.4, 1010.0, 1150.0, 12), Strength("base", 1000.0, 1000.0, 1000.0, 12)]
    assert views.leaderboard_rows(strengths)[0] == {
        "rank": 1,
        "version": "round_001",
        "strength": 1080,
        "95% interval": "1010–1150",
        "battles": 12,
    }
    plotted = views.strength_rows(strengths, ["base", "round_001", "round_002"])
    assert [(r["version"], r["line"]) for r in plotted[:3]] == [
        ("base", "strength"),
        ("base", "95% low"),
        ("base", "95% high"),
    ]
    assert {r["version"] for r in plotted} == {"base", "round_001"}, "a version without battles is not plotted"
    matrix = win_matrix(
        [Battle("base", "round_001", "b")] * 3 + [Battle("base", "round_001", "tie")],
        ["base", "round_001", "round_002"],
    )
    rows = views.matrix_rows(matrix)
    assert rows[0] == {"version": "base", "base": "–", "round_001": "12% of 4", "round_002": "–"}
    assert rows[1]["base"] == "88% of 4"


def test_starting_the_app_does_not_load_the_arenas_statistics():
    code = "import sys, services, labeling.arena; print('sklearn' in sys.modules, 'gradio' in sys.modules)"
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert out.stdout.strip() == "False False"


def test_the_results_say_how_the_newer_version_moved_and_warn_in_plain_words():
    from datetime import datetime

    from storage import Round

    def done(round_id: int, **sampled) -> Round:
        metrics = {"diagnostics": {"policy": sampled}, "heldout_after": {"accuracy": 0.75, "margin": 0.4}}
        if round_id == 1:
            metrics["diagnostics"]["base"] = {"mean_length": 100.0, "distinct_2": 0.7, "kl_per_token": 0.0}
        return Round(round_id, "done", {}, metrics, f"runs/round_00{round_id}/adapter", None, "tiny", 8,
                     datetime(2026, 12, 6), datetime(2026, 12, 6), None)  # fmt: skip

    rounds = [done(1, mean_length=90.0, distinct_2=0.72, kl_per_token=0.05), done(2, mean_length=20.0, kl_per_token=1)]
    text = views.version_change_markdown("base", "round_002", rounds)  # either order: the newer is round_002
    assert text == views.version_change_markdown("round_002", "base", rounds)
    assert text.startswith("**What round_002 changed against base** (its answers to held-out prompts):")
    assert "| mean length (tokens) | 100.0 | 20.0 |" in text
    assert "| distinct-2 | 0.700 | – |" in text, "unknown values say so"
    assert "⚠️" in text and "length" in text.lower(), "a length collapse is a warning in words"
    calm = views.version_change_markdown("base", "round_001", rounds)
    assert "| mean length (tokens) | 100.0 | 90.0 |" in calm and "No warnings about round_001." in calm
    old = Round(3, "done", {}, {}, "a", None, "tiny", 8, datetime(2026, 12, 6), None, None)
    assert "no diagnostics recorded for it" in views.version_change_markdown("round_001", "round_003", [*rounds, old])
    assert views.version_change_markdown("base", "base", rounds) == ""


def test_the_results_tell_a_labeler_whether_their_own_labels_lean():
    from evaluation.audit import Vote
    from ui import audit

    always_left = [Vote("ana", "left", 10 + i % 2, 20, i) for i in range(12)]
    fair = [Vote("bo", "left" if i % 2 else "right", 10, 20 + i % 3, 100 + i) for i in range(12)]
    leaning = audit.own_labels_markdown("ana", always_left + fair)
    assert "picks the left completion 100%" in leaning and "position bias" in leaning
    fine = audit.own_labels_markdown("bo", always_left + fair)
    assert fine.startswith("**Your labels** (bo): no sign of a position or length bias in 12 picks (left 50%")
    assert audit.own_labels_markdown("cy", fair) == (
        "**Your labels** (cy): not enough votes yet (0 of 10 picks) to tell a position or length bias."
    )


def test_the_win_rate_against_the_base_is_plotted_over_rounds_once_it_rests_on_enough_battles():
    from labeling.arena import PairResult

    pairs = [
        PairResult("round_002", "base", 8, 2, 2, win_rate(8, 2, 2, min_battles=10)),
        PairResult("round_002", "round_001", 3, 1, 0, win_rate(3, 1, 0, min_battles=10)),
        PairResult("round_001", "base", 2, 1, 0, win_rate(2, 1, 0, min_battles=10)),  # too few: not plotted
    ]
    rows = views.win_rate_rows(pairs, ["base", "round_001", "round_002"])
    assert [(r["version"], r["line"]) for r in rows] == [
        ("round_002", "win rate"),
        ("round_002", "95% low"),
        ("round_002", "95% high"),
    ]
    assert rows[0]["win rate"] == 75.0 and rows[1]["win rate"] < 75.0 < rows[2]["win rate"]
    assert views.win_rate_rows([], ["base"]) == []
