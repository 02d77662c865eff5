"""A round's folder contract (training/folder.py) and the status the Train tab shows (training/status.py), on
hand-made files and events: no model, no child process.

    python -m pytest tests/test_round_folder.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import folder
from training.runner import RoundRunner, round_command
from training.status import RoundStatus


def test_the_staging_name_and_its_glob_agree(tmp_path):
    staged = folder.staging_dir(tmp_path / "round_007")
    assert staged == tmp_path / ".round_007.tmp"
    staged.mkdir()
    (tmp_path / "round_006").mkdir()
    assert list(tmp_path.glob(folder.STAGING_GLOB)) == [staged]


def test_a_finished_rounds_files_read_back_as_written(tmp_path):
    record = {"dpo": {"beta": 0.1}, "base_model": "m", "parent_adapter": None}
    ids = {"train": [1, 2], "heldout": [3], "ratings": {"train": [], "heldout": []}}
    folder.write_result(tmp_path, record, {"n_train": 2}, ids, {"prompts": ["p"], "completions": ["c"]})
    result = folder.read_result(tmp_path)
    assert (result.metrics, result.config, result.label_ids) == ({"n_train": 2}, {"beta": 0.1}, ids)
    assert result.adapter == (tmp_path / folder.ADAPTER_DIR).resolve()
    assert json.loads((tmp_path / folder.DIAGNOSTICS_FILE).read_text())["prompts"] == ["p"]


def test_progress_events_are_one_json_line_each(tmp_path):
    with open(tmp_path / folder.PROGRESS_FILE, "w", encoding="utf-8") as f:
        folder.write_event(f, folder.stage_event("loading…"))
        folder.write_event(f, folder.phase_event("reference", 4, 40, 1.5))
        folder.write_event(f, folder.cancelled_event("stopped", "SIGTERM"))
    lines = [json.loads(line) for line in (tmp_path / folder.PROGRESS_FILE).read_text().splitlines()]
    assert lines == [
        {"event": "stage", "message": "loading…"},
        {"event": "phase", "phase": "reference", "done": 4, "total": 40, "seconds": 1.5},
        {"event": "cancelled", "message": "stopped", "signal": "SIGTERM"},
    ]


def step(n: int, total: int = 9) -> dict:
    return folder.step_event({"step": n, "total_steps": total, "loss": 0.5, "seconds": float(n)})


def test_the_status_follows_the_events_and_stays_a_value():
    status = RoundStatus("running", "Starting…", round=3)
    loading = status.with_event(folder.stage_event("loading the model…"))
    assert loading.message == "round_003: loading the model…" and status.message == "Starting…"
    first = loading.with_event(folder.phase_event("load", 1, 1, 2.0)).with_event(step(1))
    assert first.history == [{"step": 1, "total_steps": 9, "loss": 0.5, "seconds": 1.0}]
    assert first.phases == {
        "load": {"done": 1, "total": 1, "seconds": 2.0},
        "steps": {"done": 1, "total": 9, "seconds": 1.0},
    }
    assert first.message == "step 1/9 · loss 0.5000"
    second = first.with_event(step(2))
    assert len(first.history) == 1 and len(second.history) == 2, "a status once read does not change"
    assert second.with_event(folder.failed_event("boom")) == second, "endings are the runner's to record"
    assert second.ended("done", "round_003 is now serving.").state == "done"


def test_the_live_plot_starts_over_when_training_restarts():
    status = RoundStatus("running", round=1)
    for n in (1, 2, 3, 1, 2):
        status = status.with_event(step(n))
    assert [s["step"] for s in status.history] == [1, 2]


def test_a_status_refuses_an_unknown_state():
    with pytest.raises(ValueError, match="state must be one of idle, running"):
        RoundStatus("paused")


def test_the_runner_hears_steps_through_the_subscriber_it_was_given(tmp_path):
    heard = []
    runner = RoundRunner(None, "m", tmp_path, on_progress=heard.append)
    runner._status = RoundStatus("running", round=1)
    runner._on_event(step(1), [])
    runner._on_event(folder.phase_event("reference", 1, 2, 0.5), [])
    assert heard == [{"step": 1, "total_steps": 9, "loss": 0.5, "seconds": 1.0}]
    assert runner.status().phases["reference"] == {"done": 1, "total": 2, "seconds": 0.5}


def test_why_a_round_ended_without_a_result(tmp_path):
    runner = RoundRunner(None, "m", tmp_path)
    outside = [folder.cancelled_event("Round cancelled.", "SIGTERM")]
    state, message = runner._failure(3, outside, "")
    assert state == "failed" and message.startswith("The round's process was stopped by SIGTERM from outside")
    assert runner._failure(2, [step(1), folder.failed_event("Too few pairs.")], "x") == ("failed", "Too few pairs.")
    state, message = runner._failure(-9, [], "line a | line b")
    assert "killed by SIGKILL" in message and message.endswith("Its last output: line a | line b")
    runner._cancelled.set()
    assert runner._failure(3, outside, "") == ("cancelled", "Round cancelled; the previous policy keeps serving.")


def test_a_rounds_process_is_the_child_entry_point():
    assert round_command(Path("runs/.round_001.tmp"))[1:4] == ["-m", "training.child", "--round-dir"]
    assert round_command(Path("runs/.round_001.tmp"), 2)[-6:-4] == ["-m", "training.child"]
