"""Rounds in their own process: the folder they train from, progress, priority, cancel, and a killed round."""

import json
import os
import time

import pytest
import torch
from helpers import REPO, label, wait_until
from safetensors.torch import load_file

from models.adapters import adapter_digest
from storage.labels import items_from_rows, trl_rows
from training.config import DPOConfig
from training.folder import INPUT_FILE, PROGRESS_FILE, REQUEST_FILE, staging_dir
from training.plan import read_job
from training.runner import CHILD_NICE, RoundRunner, describe_exit
from training.status import RoundStatus
from training.trainer import TrainingError, run_round

pytestmark = pytest.mark.slow
QUICK = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
LONG = DPOConfig(learning_rate=5e-3, epochs=200, batch_size=1, min_pairs=4)


def test_a_round_trains_in_a_child_process_from_a_rerunnable_folder(loop, tiny_model_dir, tmp_path):
    label(loop, 10)
    served, priorities = [], []
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, on_done=served.append, device="cpu")
    runner.start(QUICK)
    child = runner._proc.pid
    assert child != os.getpid()
    priorities.append(os.getpriority(os.PRIO_PROCESS, child) - os.getpriority(os.PRIO_PROCESS, 0))
    runner.wait(300)
    status = runner.status()
    assert status.state == "done" and served[0].version == "round_001", status
    assert served[0].adapter_path == str((tmp_path / "round_001" / "adapter").resolve()), "works from any folder"
    assert served[0].metrics["adapter_sha256"] == adapter_digest(served[0].adapter_path), "checked when it loads"
    assert priorities == [0] or priorities == [CHILD_NICE]  # read before or after the child lowered it
    out = tmp_path / "round_001"
    assert {REQUEST_FILE, INPUT_FILE, PROGRESS_FILE, "log.txt", "adapter", "metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    rows = [json.loads(line) for line in (out / INPUT_FILE).read_text().splitlines()]
    pairs = loop.store.training_data.preference_pairs()
    assert rows == trl_rows(pairs), "the exact labels, in TRL's format, with their ids"
    events = [json.loads(line) for line in (out / PROGRESS_FILE).read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "step"] == [s["step"] for s in status.history] == [1, 2]
    # The folder alone re-runs the round: same labels, same config, same adapter.
    again = read_job(out) | {"out_dir": tmp_path / "again"}
    assert again["pairs"] == items_from_rows(rows) and again["config"].to_dict()["epochs"] == 1
    run_round(**again)
    first, second = (load_file(d / "adapter" / "adapter_model.safetensors") for d in (out, tmp_path / "again"))
    assert all(torch.allclose(first[k], second[k], atol=1e-6) for k in first)


def test_the_round_process_runs_at_a_lower_cpu_priority(loop, tiny_model_dir, tmp_path):
    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    runner.start(LONG)
    child = runner._proc.pid
    lowered = wait_until(lambda: os.getpriority(os.PRIO_PROCESS, child) >= CHILD_NICE, 60)
    runner.cancel()
    runner.wait(120)
    assert lowered and runner.status().state == "cancelled"


def test_cancel_stops_the_process_by_signal_leaving_no_folder(loop, tiny_model_dir, tmp_path):
    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    runner.start(LONG)
    assert wait_until(lambda: runner.status().history, 180), runner.status()
    asked = time.monotonic()
    runner.cancel()
    runner.wait(120)
    stopped_after = time.monotonic() - asked
    status = runner.status()
    assert status.state == "cancelled" and "previous policy keeps serving" in status.message
    assert runner._proc.returncode == 3, "it stopped by itself at a micro-batch, not by SIGKILL"
    assert stopped_after < 60
    (round_,) = loop.store.rounds.list()
    assert round_.status == "cancelled" and loop.server.version == "base"
    assert not any(tmp_path.iterdir()), "no round folder, no staging folder"


def test_a_round_stopped_from_outside_the_app_is_not_reported_as_cancelled(loop, tiny_model_dir, tmp_path):
    import signal

    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    runner.start(LONG)
    assert wait_until(lambda: runner.status().history, 180), runner.status()
    os.kill(runner._proc.pid, signal.SIGTERM)  # a shutdown, `kill`, a job manager: not the Cancel button
    runner.wait(120)
    status = runner.status()
    assert status.state == "failed", status
    assert status.message.startswith("The round's process was stopped by SIGTERM from outside the app")
    assert "previous policy keeps serving" in status.message
    (round_,) = loop.store.rounds.list()
    assert round_.status == "failed" and round_.error == status.message


def test_a_killed_round_leaves_the_previous_policy_serving_and_labelers_labeling(
    loop, versions, tiny_model_dir, tmp_path
):
    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, on_done=lambda r: versions.hand_over(r.version))
    runner.start(LONG)
    assert wait_until(lambda: runner.status().history, 180), runner.status()
    runner.kill()  # what the kernel does to a process that runs a CPU out of memory
    runner.wait(60)
    status = runner.status()
    assert status.state == "failed", status
    assert "killed by SIGKILL" in status.message and "previous policy keeps serving" in status.message
    (round_,) = loop.store.rounds.list()
    assert round_.status == "failed" and "SIGKILL" in round_.error
    assert loop.server.version == "base" == loop.store.rounds.get_serving()
    assert not staging_dir(tmp_path / "round_001").exists() and not (tmp_path / "round_001").exists()
    pair = loop.next_pair()  # labeling goes on
    assert loop.vote(pair, "left", labeler="t") > 0 and pair.version == "base"
    runner.start(QUICK)  # and the next round starts as usual
    runner.wait(300)
    assert runner.status().state == "done" and loop.server.version == "round_002"


def test_a_round_that_fails_in_its_process_says_why(loop, tiny_model_dir, tmp_path):
    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    with pytest.raises(TrainingError, match="no_such_layer are not linear layers of this model; pick from .*q_proj"):
        runner.start(DPOConfig(min_pairs=4, target_modules=("q_proj", "no_such_layer")))
    assert loop.store.rounds.list() == [], "refused before anything is recorded or started"
    runner.start(DPOConfig(min_pairs=4, memory_budget_gib=1e-6))  # fails in its process: no memory for even one pair
    runner.wait(300)
    status = runner.status()
    assert status.state == "failed" and "GiB are available for it. Lower max length" in status.message, status
    assert loop.store.rounds.list()[0].status == "failed"
    with pytest.raises(TrainingError, match="Too few new preference pairs: 10"):
        runner.start(DPOConfig(min_pairs=40))
    assert len(loop.store.rounds.list()) == 1, "a refused round is not recorded"


@pytest.mark.parametrize("steps, kept", [([1, 2, 3, 1, 2], [1, 2]), ([1, 2, 3], [1, 2, 3])])
def test_the_live_plot_starts_over_when_training_restarts(tmp_path, steps, kept):
    """After an out-of-memory retry training starts again from step 1: the Train tab shows that attempt only."""
    runner = RoundRunner(None, "m", tmp_path)
    runner._status = RoundStatus(state="running", round=1)
    for step in steps:
        runner._on_event({"event": "step", "step": step, "total_steps": 9, "loss": 0.5}, [])
    assert [s["step"] for s in runner.status().history] == kept


def test_exit_descriptions():
    assert "killed by SIGKILL" in describe_exit(-9) and "lack of memory" in describe_exit(-9)
    assert describe_exit(-15).endswith("killed by SIGTERM") and describe_exit(1).endswith("code 1")


def test_cancel_reaches_the_process_before_training_starts(loop, tiny_model_dir, tmp_path):
    """Cancel as soon as the round's process says it is loading: the reference pass sees it at its first
    micro-batch, so the process stops by itself before any training step."""
    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    runner.start(LONG)
    assert wait_until(lambda: "loading the model" in runner.status().message, 180), runner.status()
    runner.cancel()
    runner.wait(120)
    status = runner.status()
    assert status.state == "cancelled" and status.history == [], status
    assert runner._proc.returncode == 3, "stopped by its own check, not by SIGKILL"


def test_leftover_staging_folders_are_removed_at_start_with_a_process_left_running(tmp_path):
    import subprocess
    import sys

    (tmp_path / ".round_004.tmp" / "adapter").mkdir(parents=True)
    (tmp_path / "round_003").mkdir()
    job = tmp_path / ".round_004.tmp"
    # a round's process an app left stopped when it died (its cmdline names the folder, like a real one)
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "--round-dir", str(job)], start_new_session=True
    )
    (job / "pid").write_text(str(orphan.pid))
    removed = RoundRunner(None, "m", tmp_path).clean_leftovers()
    assert orphan.wait(timeout=60) == -9
    assert [p.name for p in removed] == [".round_004.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["round_003"]


def test_on_a_cpu_the_round_pauses_while_the_sampler_samples(loop, tiny_model_dir, tmp_path):
    """Two processes computing at once on a 2-core CPU slowed the sampler 4x (bench.round_load): the app's
    sampler holds `paused()` around each batch, which stops the round's process meanwhile."""
    import psutil

    from services import ServiceConfig, open_services

    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    runner.start(LONG)
    assert wait_until(lambda: runner.status().history, 180), runner.status()
    child = psutil.Process(runner._proc.pid)
    with runner.paused():
        with runner.paused():
            assert wait_until(lambda: child.status() == psutil.STATUS_STOPPED, 10), "no training while paused"
        assert child.status() == psutil.STATUS_STOPPED, "holders are counted: the last one resumes it"
        time.sleep(0.5)  # the watcher reads a progress line written just before the stop
        steps = len(runner.status().history)
    assert wait_until(lambda: len(runner.status().history) > steps, 60), "it trains again"
    with runner.paused():
        runner.cancel()  # a paused round still hears Cancel
        runner.wait(120)
    assert runner.status().state == "cancelled" and runner._proc.returncode == 3
    config = ServiceConfig(db=str(tmp_path / "s.duckdb"), model=str(tiny_model_dir), runs=str(tmp_path), device="cpu")
    services = open_services(config)
    try:
        assert services.loop.sampler.while_sampling == services.runner.paused, "the app wires it on a CPU"
    finally:
        services.close()


def test_a_round_paused_when_the_app_dies_dies_with_it(tiny_model_dir, tmp_path):
    """A paused (stopped) round cannot run its own orphan watch: the kernel ends it with the app. Rounds start
    from gradio's worker threads, which come and go: a thread that ends must not take its round with it."""
    import subprocess
    import sys
    import textwrap

    import psutil

    app = textwrap.dedent(
        f"""
        import sys, threading, time
        sys.path.insert(0, "tests")
        from helpers import label
        from labeling.loop import Loop
        from labeling.sampler import PairSampler
        from serving import TorchPolicyServer, SamplingSettings
        from storage import Store
        from training.config import DPOConfig
        from training.runner import RoundRunner

        store = Store(":memory:")
        store.prompts.add_many([f"Tell me about topic {{i}}." for i in range(12)], source="test")
        server = TorchPolicyServer({str(tiny_model_dir)!r}, device="cpu")
        sampler = PairSampler(store, server, depth=3, seed=0)
        sampler.set_settings(SamplingSettings(max_new_tokens=8))
        label(Loop(store, server, sampler), 10)
        runner = RoundRunner(store, {str(tiny_model_dir)!r}, {str(tmp_path)!r}, device="cpu")
        worker = threading.Thread(target=runner.start, args=(DPOConfig(learning_rate=5e-3, epochs=200,
                                  batch_size=1, min_pairs=4),))
        worker.start()
        worker.join()  # the thread that asked for the round has ended, as gradio's do
        while not runner.status().history:
            time.sleep(0.2)
        with runner.paused():
            print(runner._proc.pid, flush=True)
            time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", app], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(proc.stdout.readline()))
        assert wait_until(lambda: child.status() == psutil.STATUS_STOPPED, 30), "paused, and alive"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()

    def gone() -> bool:
        try:
            return child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert wait_until(gone, 30), "the stopped round outlived the app"


def test_a_second_app_on_the_same_runs_folder_is_refused_and_ends_nothing(tiny_model_dir, tmp_path):
    import subprocess
    import sys
    import textwrap

    runs = tmp_path / "runs"
    job = runs / ".round_001.tmp"
    job.mkdir(parents=True)
    first_app = textwrap.dedent(
        f"""
        import subprocess, sys, time
        from pathlib import Path
        from training.runner import claim_runs_folder
        claim = claim_runs_folder(Path({str(runs)!r}))
        # its round, running (its command line names its folder, like a real one)
        round_ = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "--round-dir", {str(job)!r}])
        Path({str(job / "pid")!r}).write_text(str(round_.pid))
        print(round_.pid, flush=True)
        time.sleep(600)
        """
    )
    first = subprocess.Popen([sys.executable, "-c", first_app], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        round_pid = int(first.stdout.readline())
        second = subprocess.run(
            [sys.executable, "app.py", "--model", str(tiny_model_dir), "--db", str(tmp_path / "other.duckdb"),
             "--runs", str(runs), "--no-browser"],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode != 0
        assert f"The runs folder {runs} is in use by another running prefloop app (process {first.pid})" in (
            second.stderr
        ), second.stderr
        assert "--runs pointing at another folder" in second.stderr and "Traceback" not in second.stderr
        assert psutil_running(round_pid) and job.is_dir(), "the first app's round and its folder are untouched"
    finally:
        first.kill()
        first.wait()
        first.stdout.close()
    from training.runner import claim_runs_folder

    claim_runs_folder(runs).close()  # the lock went with the process that held it


def psutil_running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def test_a_round_whose_process_cannot_start_leaves_no_folder_and_says_so(loop, tiny_model_dir, tmp_path, monkeypatch):
    import training.runner as runner_module

    label(loop, 10)
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, device="cpu")
    # as when the Python the app runs on was removed or replaced under it
    monkeypatch.setattr(runner_module, "round_command", lambda job, processes: [str(tmp_path / "no-python")])
    with pytest.raises(TrainingError, match="Could not start the round's process: .*no-python"):
        runner.start(QUICK)  # the Train tab shows TrainingError's message
    status = runner.status()
    assert status.state == "failed" and status.message.startswith("Could not start the round's process"), status
    assert "previous policy keeps serving" in status.message
    assert list(tmp_path.iterdir()) == [], "no staging folder is left behind"
    (failed,) = loop.store.rounds.list()
    assert failed.status == "failed" and failed.error == status.message
