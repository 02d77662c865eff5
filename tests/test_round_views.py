"""What the Train tab shows about round diagnostics and review, on hand-made rounds (ui/views.py): the history the
warnings read, the plots' rows, the warnings, the review panel and an early stop in the rounds table."""

from datetime import datetime

import pytest

from storage import Round
from ui import views

BASE = {"mean_length": 80.0, "distinct_2": 0.8, "repeated_4gram": 0.0, "kl_per_token": 0.0}


def a_round(round_id: int, policy: dict | None, base: dict | None = None, status="done", **metrics) -> Round:
    """A round whose diagnostics measured `policy` (and `base`), held-out accuracy 0.75 and margin 0.5."""
    diagnostics = None if policy is None else {"prompts": 4, "max_new_tokens": 96, "policy": policy, "base": base}
    return Round(
        id=round_id,
        status=status,
        config={},
        metrics={
            "diagnostics": diagnostics,
            "heldout_after": {"accuracy": 0.75, "margin": 0.5, "chosen_reward": 0.2, "rejected_reward": -0.3},
            "train": {"accuracy": 0.8},
        }
        | metrics,
        adapter_path=None,
        parent_round=None,
        base_model="tiny",
        n_pairs=8,
        started_at=datetime(2025, 1, 2),
        finished_at=None,
        error=None,
    )


def rounds() -> list[Round]:
    first = a_round(1, {"mean_length": 84.0, "distinct_2": 0.78, "repeated_4gram": 0.0, "kl_per_token": 0.01}, BASE)
    failed = a_round(2, None, status="failed")
    long = a_round(3, {"mean_length": 130.0, "distinct_2": 0.75, "repeated_4gram": 0.0, "kl_per_token": 0.02})
    return [first, failed, long]


def test_the_history_starts_at_the_base_and_holds_the_done_rounds():
    history = views.diagnostics_history(rounds())
    assert [d.round for d in history] == ["base", "round_001", "round_003"]
    assert history[0].mean_length == 80.0 and history[0].heldout_accuracy is None
    assert history[2].mean_length == 130.0 and history[2].heldout_margin == 0.5 and history[2].train_accuracy == 0.8
    assert [d.round for d in views.diagnostics_history(rounds(), until="round_001")] == ["base", "round_001"]


def test_rounds_without_diagnostics_leave_them_unknown():
    old = a_round(1, None)
    (base, first) = views.diagnostics_history([old])
    assert base.mean_length is None and first.kl_per_token is None and first.heldout_accuracy == 0.75
    shares, lengths = views.diagnostics_rows([base])
    assert shares == [] and lengths == []


def test_plot_rows_are_long_form_with_length_on_its_own():
    shares, lengths = views.diagnostics_rows(views.diagnostics_history(rounds()))
    assert lengths == [
        {"version": "base", "value": 80.0, "metric": "mean length (tokens)"},
        {"version": "round_001", "value": 84.0, "metric": "mean length (tokens)"},
        {"version": "round_003", "value": 130.0, "metric": "mean length (tokens)"},
    ]
    assert {"version": "round_003", "value": 0.02, "metric": "KL per token (nats)"} in shares
    assert {"version": "round_001", "value": 0.75, "metric": "held-out accuracy"} in shares
    assert not [r for r in shares if r["version"] == "base" and r["metric"].startswith("held-out")]


def test_warnings_name_the_newest_round_and_what_to_do():
    text = views.warnings_markdown(views.diagnostics_history(rounds()))
    assert text.startswith("- ⚠️ round_003: answers are 55% longer than in round_001") and "Raise beta" in text
    assert views.warnings_markdown(views.diagnostics_history(rounds(), until="round_001")) == ""


def test_the_review_panel_compares_the_candidate_with_the_serving_version():
    history = views.diagnostics_history(rounds(), until="round_003")
    text = views.review_markdown("round_003", "round_001", history)
    assert text.startswith("### round_003 is ready for review\n")
    assert "**round_001** keeps serving until you serve round_003" in text
    assert "| mean length (tokens) | 84.0 | 130.0 |" in text
    assert "| KL per token (nats) | 0.010 | 0.020 |" in text
    assert "⚠️ round_003: answers are 55% longer" in text
    calm = views.review_markdown("round_001", "base", views.diagnostics_history(rounds(), until="round_001"))
    assert "| mean length (tokens) | 80.0 | 84.0 |" in calm and "| held-out margin | – | 0.500 |" in calm
    assert calm.endswith("No warnings about round_001.")


@pytest.mark.parametrize(
    ("stopped", "expected"),
    [
        ({"reason": "max_steps", "step": 4}, "done · stopped at step 4 (max_steps)"),
        ({"reason": "target_margin", "step": 6}, "done · stopped at step 6 (target_margin)"),
        ({"reason": "finished", "step": 9}, "done"),
        (None, "done"),
    ],
)
def test_the_rounds_table_says_when_a_round_stopped_early(stopped, expected):
    assert views.round_row(a_round(1, None, stopped=stopped))["status"] == expected
