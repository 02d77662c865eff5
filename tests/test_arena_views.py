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
