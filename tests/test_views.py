"""The UI's pure parts, on hand-made inputs: what the widgets show (ui/views.py) and the Train tab's fields,
generated from DPOConfig (ui/train.py). No app, model or browser."""

import dataclasses
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from services import RoundStatus, Status
from storage import Round
from training.config import DEFAULT_TARGET_MODULES, LOSS_TYPES, DPOConfig
from ui import views
from ui.train import COMMON_FIELDS, config_fields, config_from_values, parse_processes


def status(queued=3, depth=8, serving="round_002", error=None) -> Status:
    return Status(serving=serving, queued=queued, depth=depth, sampling_error=error)


def a_round(**changes) -> Round:
    fields = dict(
        id=2,
        status="done",
        config={"reference": "base"},
        metrics={
            "train": {"loss": 0.51234},
            "heldout_before": {"accuracy": 0.5, "margin": 0.0},
            "heldout_after": {"accuracy": 0.75, "margin": 0.123},
            "seconds": 12.5,
        },
        adapter_path="runs/round_002/adapter",
        parent_round=1,
        base_model="tiny",
        n_pairs=8,
        started_at=datetime(2025, 1, 2, 3, 4),
        finished_at=None,
        error=None,
        n_ratings=2,
    )
    return Round(**(fields | changes))


# -- labeling ------------------------------------------------------------------------------------------------
def test_pair_status_names_the_version_and_the_queue():
    assert views.pair_status("round_001", status()) == "Pair from **round_001** · 3 ready in the queue"


def test_pair_and_queue_status_show_a_background_sampling_error():
    broken = status(error="CUDA out of memory")
    assert views.pair_status("base", broken).endswith(" · background sampling: CUDA out of memory")
    assert views.queue_status(broken) == (
        "Queue: 3 of 8 pairs ready · serving **round_002** · background sampling: CUDA out of memory"
    )


def test_queue_status_without_an_error():
    assert (
        views.queue_status(status(queued=0, depth=2, serving="base")) == "Queue: 0 of 2 pairs ready · serving **base**"
    )


def test_single_status_numbers_the_completion_by_side():
    assert (
        views.single_status("base", "left", status()) == "Completion 1 of 2 from **base** · 3 pairs ready in the queue"
    )
    assert views.single_status("base", "right", status()).startswith("Completion 2 of 2 from **base**")


def test_vote_and_rating_messages():
    assert views.vote_message(7, "tie", 12) == "Saved vote #7 (tie). Total votes: 12."
    counts = {"pairs": 0, "both_bad": 0, "tie": 0, "up": 3, "down": 1}
    assert views.rating_message(4, "down", "right", counts) == (
        "Saved 👎 #4 on completion 2. Single ratings: 3 👍 / 1 👎 (they train the kto loss)."
    )


def test_label_summary_says_which_loss_each_label_feeds():
    summary = views.label_summary({"pairs": 10, "both_bad": 2, "tie": 1, "up": 3, "down": 4})
    assert "10 pairs (every loss)" in summary and "2 both bad (kto)" in summary
    assert "3 👍 / 4 👎 single ratings (kto)" in summary and "1 ties (not trained)" in summary


# -- rounds ------------------------------------------------------------------------------------------------
def test_before_after_shows_both_held_out_scores():
    assert views.before_after(a_round().metrics, "accuracy") == "0.50 → 0.75"


def test_before_after_has_no_before_against_the_previous_policy():
    assert views.before_after(a_round().metrics, "margin", reference="previous") == "– → 0.12"


def test_before_after_is_empty_when_nothing_was_held_out():
    assert views.before_after({"heldout_before": None, "heldout_after": None}, "accuracy") == ""


def test_round_row_fills_every_column():
    row = views.round_row(a_round())
    assert tuple(row) == views.ROUND_COLUMNS
    assert row["version"] == "round_002" and row["parent"] == "round_001" and row["final loss"] == "0.5123"
    assert row["held-out accuracy"] == "0.50 → 0.75" and row["started"] == "2025-01-02 03:04"


def test_round_row_of_a_failed_first_round():
    failed = a_round(id=1, status="failed", parent_round=None, metrics={}, error="Too few pairs")
    row = views.round_row(failed)
    assert (row["parent"], row["final loss"], row["held-out accuracy"], row["error"]) == (
        "base",
        "",
        "",
        "Too few pairs",
    )


def test_progress_bar_fills_in_proportion_and_clips():
    assert views.progress_bar(0.25, width=8) == "██░░░░░░"
    assert views.progress_bar(1.5, width=4) == "████" and views.progress_bar(-1, width=4) == "░░░░"


def test_round_progress_before_and_during_training():
    starting = RoundStatus(state="running", message="Starting…", history=[])
    assert views.round_progress(starting) == "**running** · Starting…"
    step = {"step": 5, "total_steps": 10, "seconds": 3.2, "loss": 0.6, "margin": 0.1, "accuracy": 0.5}
    text = views.round_progress(RoundStatus(state="running", message="step 5/10", history=[step]))
    assert text == f"**running** · step 5/10\n\n`{'█' * 10}{'░' * 10}` 50% · 3s"


def test_round_progress_shows_each_phase_with_its_own_bar_and_time_left():
    phases = {
        "load": {"done": 1, "total": 1, "seconds": 4.2},
        "reference": {"done": 40, "total": 40, "seconds": 149},
        "steps": {"done": 24, "total": 24, "seconds": 1478},
        "diagnostics": {"done": 12, "total": 48, "seconds": 80},
    }
    text = views.round_progress(RoundStatus(state="running", message="m", history=[], phases=phases))
    assert text.split("\n\n")[1].split("  \n") == [
        "✓ loading the model · 4 s",
        "✓ scoring the labels with the reference · 2 min",
        "✓ training · 25 min",
        f"`{'█' * 5}{'░' * 15}` answering held-out prompts (diagnostics and the health check) · 12/48 · 25% · 80 s"
        " · about 4 min left",
    ], "no more '100 %' while the round still works: the phase after the steps has its own bar"
    assert views.phase_line("reference", {"done": 0, "total": 40, "seconds": 0.5}).endswith("0/40 · 0% · 0 s")
    assert views.duration(3725) == "1 h 02 min"


def test_plot_rows_are_long_form_and_empty_before_a_round():
    assert views.plot_rows([]) == []
    rows = views.plot_rows([{"step": 1, "loss": 0.7, "margin": 0.0, "accuracy": 0.5, "seconds": 1}])
    assert rows == [
        {"step": 1, "value": 0.7, "metric": "loss"},
        {"step": 1, "value": 0.0, "metric": "margin"},
        {"step": 1, "value": 0.5, "metric": "accuracy"},
    ]


# -- the Train tab's fields, generated from DPOConfig ---------------------------------------------------------
def test_the_train_tab_has_a_field_for_every_config_field_common_ones_first():
    fields = config_fields()
    assert sorted(f.name for f in fields) == sorted(f.name for f in dataclasses.fields(DPOConfig))
    assert tuple(f.name for f in fields[: len(COMMON_FIELDS)]) == COMMON_FIELDS
    assert all(f.common == (f.name in COMMON_FIELDS) for f in fields)
    assert all(f.help for f in fields), "every field shows its help"


def test_field_kinds_follow_the_config_types():
    kinds = {f.name: (f.kind, f.optional) for f in config_fields()}
    assert kinds["beta"] == ("float", False) and kinds["epochs"] == ("int", False)
    assert kinds["micro_batch"] == ("int", True) and kinds["memory_budget_gib"] == ("float", True)
    assert kinds["continue_from_serving"] == ("bool", False) and kinds["target_modules"] == ("names", False)
    assert kinds["loss_type"] == ("choice", False) and kinds["compute_dtype"] == ("choice", False)
    assert {f.name: f.choices for f in config_fields()}["loss_type"] == LOSS_TYPES


def test_every_field_round_trips_through_widget_values():
    changed = DPOConfig(
        beta=0.2, learning_rate=5e-3, epochs=2, batch_size=8, grad_accum=2, micro_batch=2, max_length=192,
        max_prompt_length=64, label_smoothing=0.1, lora_r=4, lora_alpha=8, lora_dropout=0.1,
        target_modules=("q_proj", "v_proj"), heldout_fraction=0.1, min_pairs=6, continue_from_serving=False,
        reference="previous", quantization="none", compute_dtype="float32", gradient_checkpointing=True,
        memory_budget_gib=2.5, group_by_length=False, seed=3, arena_pairs=True, max_steps=7, target_margin=0.5,
        eval_every=2, diagnostic_prompts=4, diagnostic_tokens=32, rpo_alpha=0.37, gate_nll_increase=0.7,
        gate_foreign_script=0.05, gate_kl=0.9, gate_heldout_accuracy=0.4, gate_logratio_drop=77.0, dpop_lambda=2.0,
        gate_invented=0.3,
    )  # fmt: skip
    defaults = DPOConfig()
    for field in dataclasses.fields(DPOConfig):
        if field.name == "loss_type":  # label_smoothing needs the default, sigmoid; the next lines change it
            continue
        assert getattr(changed, field.name) != getattr(defaults, field.name), f"set {field.name} in this test"
    values = {f.name: getattr(changed, f.name) for f in config_fields()}
    values["target_modules"] = "q_proj, v_proj"  # as the text box holds it
    values["epochs"] = 2.0  # as a number box may send it
    assert config_from_values(values) == changed
    assert config_from_values({"loss_type": "kto"}).loss_type == "kto"


def test_absent_fields_keep_their_defaults_and_empty_optional_means_unset():
    assert config_from_values({}) == DPOConfig()
    config = config_from_values({"micro_batch": None, "max_prompt_length": "", "memory_budget_gib": None})
    assert config.micro_batch is None and config.memory_budget_gib is None
    assert config.max_prompt_length == config.max_length // 2  # unset: DPOConfig's own default


def test_target_modules_split_on_commas_and_whitespace():
    assert config_from_values({"target_modules": " q_proj,v_proj  o_proj ,\n"}).target_modules == (
        "q_proj",
        "v_proj",
        "o_proj",
    )
    assert config_from_values({}).target_modules == DEFAULT_TARGET_MODULES


def test_bad_values_raise_with_the_fields_message():
    with pytest.raises(ValueError, match="beta must be > 0"):
        config_from_values({"beta": -1})
    with pytest.raises(ValueError, match="epochs must be a whole number, got 2.5"):
        config_from_values({"epochs": 2.5})
    with pytest.raises(ValueError, match="learning_rate must be a number, got 'fast'"):
        config_from_values({"learning_rate": "fast"})
    with pytest.raises(ValueError, match="batch_size must be a number, got None"):
        config_from_values({"batch_size": None})  # not optional: empty is refused
    with pytest.raises(ValueError, match="target_modules must name at least one linear layer"):
        config_from_values({"target_modules": " , "})
    with pytest.raises(ValueError, match=r"Unknown DPO config field\(s\) \['betta'\]"):
        config_from_values({"betta": 0.1})


def test_processes_empty_means_the_default_else_at_least_one():
    assert parse_processes(None) is None and parse_processes("") is None and parse_processes(2.0) == 2
    with pytest.raises(ValueError, match="processes must be at least 1"):
        parse_processes(0)


def test_queue_status_carries_a_serving_notice():
    notice = "Could not load round_002 (OSError: gone); serving round_001 instead."
    text = views.queue_status(Status("round_001", queued=1, depth=8, sampling_error=None, notice=notice))
    assert text.startswith("Queue: 1 of 8 pairs ready · serving **round_001**") and text.endswith(notice)


def test_nothing_but_the_app_imports_gradio():
    code = (
        "import sys, labeling.loop, labeling.sampler, models, storage, serving, services, training.runner, "
        "training.__main__, training.child; "
        "print('gradio' in sys.modules)"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, check=True)
    assert out.stdout.strip() == "False"


def test_prompts_render_markdown_that_fetches_nothing_and_links_nowhere():
    hostile = (
        "Look: ![pixel](https://tracker.example/p.gif) [click](https://evil.example) <https://evil.example> "
        '<img src="https://tracker.example/q.gif"> https://bare.example\n\n'
        "[ref]: https://evil.example\n\n<script>alert(1)</script>\n\n"
        "```python\nprint('hi')\n```\n\n- one\n- two\n\n**bold**"
    )
    html = views.prompt_html(hostile)
    assert "<img" not in html and "<a " not in html and "<script" not in html and "href" not in html
    assert "![pixel](https://tracker.example/p.gif)" in html, "what was written stays readable, as text"
    assert '<code class="language-python">' in html and "<li>one</li>" in html and "<strong>bold</strong>" in html
    assert "&lt;img" in html and "&lt;script&gt;" in html


def test_completions_render_like_prompts_raw_on_request_and_say_when_cut():
    shown = views.completion_html("- one\n- two\n\n![x](https://t.example/p.gif)", cut_at=None)
    assert "<li>one</li>" in shown and "<img" not in shown and "cut at" not in shown
    raw = views.completion_html("<b>bold</b>\n- one", cut_at=128, raw=True)
    assert "<pre>&lt;b&gt;bold&lt;/b&gt;\n- one</pre>" in raw and "✂ cut at 128 tokens" in raw


def test_counters_and_the_waiting_line_say_what_the_screen_waits_for():
    counts = {"today": 12, "mine": 5, "since_round": 7}
    line = views.counters_line(counts, status(queued=3))
    assert line == "Labeled today **12** · by you **5** · since the last round **7** · **3** pairs ready"
    empty = dataclasses.replace(status(queued=0), eta_s=3.4)
    assert views.counters_line(counts, empty).endswith("⏳ Sampling the next pair… ~3 s")
    assert views.waiting_line(dataclasses.replace(empty, eta_s=None)) == "⏳ Sampling the next pair…"
    assert "failed: boom" in views.waiting_line(status(queued=0, error="boom"))
    assert "Every prompt has a vote" in views.counters_line(counts, status(), prompts_left=0)


def test_guidelines_show_the_newest_or_say_there_are_none():
    assert "No guidelines yet" in views.guidelines_html(None)
    shown = views.guidelines_html(("Prefer **short** answers. [x](https://e.example)", "ada", datetime(2026, 11, 29)))
    assert "<strong>short</strong>" in shown and "<a " not in shown and "by ada, 2026-11-29 00:00" in shown
