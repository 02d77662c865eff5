"""Rounds in their own process: the app (and the CLI) plan a round, write its folder, and start

    python -m training.child --round-dir runs/.round_003.tmp --nice 10          # one process
    python -m torch.distributed.run --standalone --nproc_per_node N -m training.child --round-dir ...   # N GPUs

The child (training/child.py) never opens the database; it trains from the folder, appends its progress events
(training/folder.py) to `progress.jsonl`, and renames the folder to `runs/round_003/` when complete. It runs at a
lower CPU priority (and on a CPU the app's sampler pauses it while a batch samples: `RoundPause`), so sampling
for labelers keeps its pace, and in a process group of its own, so Cancel (SIGTERM, then SIGKILL) reaches every
rank. Whatever happens to the child (cancelled, killed, out of memory, crashed), the app records the round as
cancelled or failed with a message that says so, and the previous policy keeps serving.

    runner = RoundRunner(store, model, Path("runs"), on_done=lambda r: print(r.version, "done"))  # given once
    runner.start(DPOConfig()); runner.status().state; runner.cancel(); runner.wait()
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from models import linear_layer_names
from models.adapters import adapter_digest
from storage import Round, round_version
from training import folder
from training.config import DPOConfig
from training.folder import LOG_FILE, PID_FILE, PROGRESS_FILE, STAGING_GLOB, read_result, staging_dir
from training.gate import gate_record
from training.plan import plan_round, write_job
from training.status import RoundStatus
from training.trainer import TrainingError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
CLAIM_FILE = ".app.lock"  # in the runs folder: held by the app using it (claim_runs_folder)
CHILD_NICE = 10  # CPU priority of a round's process, below the app's sampler and web server
CANCEL_GRACE_S = 10.0  # after SIGTERM, how long a round's process may take to stop before SIGKILL
# The least share of the time a paused round still gets: when labelers take pairs as fast as the sampler makes
# them, the sampler would otherwise pause the round for good. After each pause of T s, the next waits T/3 s.
MIN_ROUND_SHARE = 0.25


def memory_note(metrics: dict) -> str:
    """What a round changed to fit its memory, in words ('' when nothing)."""
    metrics = metrics or {}
    if metrics.get("oom_retry"):
        return (
            f" It ran out of GPU memory once and trained again from the start with {metrics['micro_batch']} pair(s) "
            "per forward/backward pass and gradient checkpointing; same pairs per step."
        )
    plan = metrics.get("memory_plan") or {}
    if not plan.get("changed"):
        return ""
    how = f"{plan['micro_batch']} pair(s) per forward/backward pass"
    how += " with gradient checkpointing" if plan["gradient_checkpointing"] else ""
    return (
        f" To fit {plan['budget_gib']} GiB of memory it trained {how} (about {plan['estimated_gib']} GiB); "
        "same pairs per step."
    )


def stop_note(metrics: dict) -> str:
    """Why training stopped before its epochs were done, in words ('' when it ran them all)."""
    stopped = (metrics or {}).get("stopped") or {}
    why = {"max_steps": "max_steps reached", "target_margin": "the held-out margin reached target_margin"}
    if stopped.get("reason") not in why:
        return ""
    return f" Training stopped after step {stopped['step']}: {why[stopped['reason']]}."


def default_processes(device: str | None) -> int:
    """One process per GPU on a CUDA machine, else one."""
    import torch

    if (device is None or device.startswith("cuda")) and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


def check_target_modules(model: str, target_modules) -> None:
    """Refuse LoRA target modules the model does not have, before a round is recorded or started."""
    layers = linear_layer_names(model)
    missing = [name for name in target_modules if name not in layers]
    if missing:
        raise TrainingError(
            f"LoRA target module(s) {', '.join(missing)} are not linear layers of this model; pick from "
            f"{', '.join(sorted(layers))}."
        )


def round_command(job: Path, processes: int = 1, nice: int = CHILD_NICE) -> list[str]:
    """The command that trains the round prepared in `job`: `python -m training.child --round-dir job`, under
    torchrun with `processes` > 1."""
    args = ["-m", "training.child", "--round-dir", str(job), "--nice", str(nice)]
    if processes == 1:
        return [sys.executable, *args]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return [sys.executable, *launcher, *args]


def describe_exit(returncode: int) -> str:
    """Why a round's process ended without a result, in words."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        why = " (on a CPU this is usually the kernel ending it for lack of memory)" if name == "SIGKILL" else ""
        return f"The round's process was killed by {name}{why}"
    return f"The round's process exited with code {returncode}"


class RoundPause:
    """While held (`paused()`), a running round's processes are stopped (SIGSTOP; SIGCONT after): whoever holds
    this has the machine. On a CPU the app's sampler holds it for each batch, so the two do not compute at once
    (with a lower CPU priority alone they did, and the sampler made 4 pairs/min instead of 32; pausing at the next
    micro-batch instead still overlapped them for seconds: bench.round_load). The round still gets
    MIN_ROUND_SHARE of the time: a pause may first wait for the round's turn. Holders are counted; the last one
    resumes it. Made before the runner and the sampler, and given to both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pausers = 0
        self._proc: subprocess.Popen | None = None
        self._paused_at = self._resumed_at = self._last_pause_s = 0.0

    def track(self, proc: subprocess.Popen) -> None:
        """Pause `proc` from now on (a round's process group); stopped at once if a holder is in."""
        with self._lock:  # started while a batch samples: it waits for the batch like a running one
            self._proc = proc
            if self._pausers:
                _signal_group(proc, signal.SIGSTOP)

    @contextmanager
    def paused(self):
        """Hold the machine: the round's processes are stopped until the last holder leaves."""
        self._wait_for_rounds_turn()
        with self._lock:
            self._pausers += 1
            if self._pausers == 1:
                self._paused_at = time.monotonic()
                self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            with self._lock:
                self._pausers -= 1
                if self._pausers == 0:
                    self._signal(signal.SIGCONT)
                    self._resumed_at = time.monotonic()
                    self._last_pause_s = self._resumed_at - self._paused_at

    def _wait_for_rounds_turn(self) -> None:
        """With a round running and not paused: wait until it has run MIN_ROUND_SHARE of the time since the
        last pause began."""
        if self._proc is None or self._proc.poll() is not None or self._pausers:
            return
        turn = self._last_pause_s * MIN_ROUND_SHARE / (1 - MIN_ROUND_SHARE)
        time.sleep(max(0.0, min(turn, 60.0) - (time.monotonic() - self._resumed_at)))

    def _signal(self, sig: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            _signal_group(self._proc, sig)


class RoundRunner:
    """One round at a time, each in a child process; `status()` is what the Train tab shows. Its subscribers are
    given here, once: `on_done(finished Round)` when a round is recorded as done (what it returns, if anything, is
    the status message; default "round_NNN is now serving."), `on_progress(step metrics)` at each optimizer step.
    `pause`: shared with whoever must stop the round while it computes (the sampler on a CPU); `claim`: the runs
    folder's lock (claim_runs_folder), closed with the app."""

    def __init__(
        self,
        store,
        model: str,
        runs_dir: Path,
        on_done: Callable[[Round], str | None] | None = None,
        device: str | None = None,
        processes: int | None = None,
        on_progress: Callable[[dict], None] | None = None,
        pause: RoundPause | None = None,
        claim=None,
    ) -> None:
        self.store, self.model, self.runs_dir, self.device = store, model, Path(runs_dir), device
        self._on_done, self._on_progress = on_done, on_progress
        self.processes = processes
        self.pause = pause if pause is not None else RoundPause()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None
        self._cancelled = threading.Event()
        self._status = RoundStatus()
        self.claim = claim  # the runs folder's lock file while this app holds it (claim_runs_folder)

    @property
    def paused(self):
        """`RoundPause.paused` for this runner's rounds: `with runner.paused(): ...`."""
        return self.pause.paused

    def running(self) -> bool:
        return self._watcher is not None and self._watcher.is_alive()

    def status(self) -> RoundStatus:
        """The running or last round (a value: it does not change after it is returned)."""
        return self._status

    def start(self, config: DPOConfig, processes: int | None = None) -> int:
        """Plan the round, record it as running, write its folder and start its process; returns the round id.
        Refuses (TrainingError / StoreError, nothing recorded) a second round or too few labels."""
        with self._lock:
            if self.running():
                raise TrainingError("A round is already running: wait for it to finish or cancel it first.")
            processes = processes or self.processes or default_processes(self.device)
            check_target_modules(self.model, config.target_modules)
            plan = plan_round(self.store, config)
            round_id = self.store.rounds.start(config.to_dict(), plan.parent_round, self.model)
            out_dir = self.runs_dir / round_version(round_id)
            try:
                job = write_job(out_dir, plan, config, model=self.model, round_id=round_id, device=self.device)
                proc = _spawn(job, processes)
            except BaseException as err:
                message = f"Could not start the round's process: {err}. The previous policy keeps serving."
                shutil.rmtree(staging_dir(out_dir), ignore_errors=True)
                self.store.rounds.fail(round_id, message)
                self._status = RoundStatus("failed", message, round_id)
                if isinstance(err, Exception):
                    raise TrainingError(message) from err
                raise
            self._cancelled.clear()
            (job / PID_FILE).write_text(str(proc.pid))  # so a later start can end it if this app dies first
            self._proc = proc
            self.pause.track(proc)
            self._status = RoundStatus("running", "Starting…", round_id)
            self._watcher = threading.Thread(
                target=self._watch, args=(round_id, proc, job, out_dir), name="round-watcher", daemon=True
            )
            self._watcher.start()
            return round_id

    def clean_leftovers(self) -> list[Path]:
        """Remove the staging folders (`.round_NNN.tmp`) a stopped app or a crash left behind, ending a round
        process still running from one (an app killed while it was paused); call at start-up, before any round
        runs. Returns what was removed."""
        return clean_leftovers(self.runs_dir)

    def cancel(self) -> None:
        """Ask the round's process to stop (SIGTERM to its group); SIGKILL if it is still there after a grace."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._cancelled.set()
        _signal_group(proc, signal.SIGTERM)
        _signal_group(proc, signal.SIGCONT)  # a paused round must run to act on it

        def escalate() -> None:
            try:
                proc.wait(CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)

        threading.Thread(target=escalate, name="round-cancel", daemon=True).start()

    def kill(self) -> None:
        """SIGKILL the round's process group at once (what the kernel does when memory runs out)."""
        if self._proc is not None and self._proc.poll() is None:
            _signal_group(self._proc, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> None:
        if self._watcher is not None:
            self._watcher.join(timeout)

    # -- the watcher thread ---------------------------------------------------------------------------
    def _watch(self, round_id: int, proc: subprocess.Popen, job: Path, out_dir: Path) -> None:
        events: list[dict] = []
        pending = ""  # a line the child has not finished writing yet
        with open(job / PROGRESS_FILE, "a+", encoding="utf-8") as progress:
            progress.seek(0)  # the handle keeps reading after the child renames the folder
            while True:
                exited = proc.poll() is not None
                *lines, pending = (pending + progress.read()).split("\n")
                for line in filter(str.strip, lines):
                    self._on_event(json.loads(line), events)
                if exited:
                    break
                time.sleep(0.2)
        try:
            state, message = self._finish(round_id, proc.returncode, events, job, out_dir)
        except Exception as err:  # recording or serving failed: say so, keep the previous policy
            log.exception("round %s could not be recorded", round_id)
            state, message = "failed", f"Round failed ({type(err).__name__}: {err})."
        self._status = self._status.ended(state, message)

    def _on_event(self, event: dict, events: list[dict]) -> None:
        events.append(event)
        self._status = self._status.with_event(event)
        if event.get("event") == folder.STEP and self._on_progress is not None:
            self._on_progress(self._status.history[-1])

    def _finish(self, round_id: int, returncode: int, events: list[dict], job: Path, out_dir: Path) -> tuple[str, str]:
        """Record how the round ended, in the store; returns its state and message."""
        if returncode == 0 and out_dir.is_dir():
            return "done", self._record_done(round_id, out_dir)
        last_lines = _tail(job / LOG_FILE)
        shutil.rmtree(job, ignore_errors=True)
        state, message = self._failure(returncode, events, last_lines)
        if state == "cancelled":
            self.store.rounds.fail(round_id, message, status="cancelled")
        else:
            self.store.rounds.fail(round_id, message)
        return state, message

    def _record_done(self, round_id: int, out_dir: Path) -> str:
        """Record the finished round in `out_dir` with its health gate and adapter digest, tell `on_done`;
        returns the status message."""
        result = read_result(out_dir)
        metrics = result.metrics
        earlier = [r.metrics for r in reversed(self.store.rounds.list()) if r.status == "done"]
        metrics["gate"] = gate_record(metrics, DPOConfig.from_dict(result.config), earlier)  # kept with the round
        metrics["adapter_sha256"] = adapter_digest(result.adapter)  # checked whenever the version loads
        ids = result.label_ids
        battles = ids.get("battles", {}).get("train", [])  # rounds written before arena votes trained: none
        self.store.rounds.finish(round_id, str(result.adapter), metrics, ids["train"], ids["ratings"]["train"], battles)
        finished = self.store.rounds.get(round_id)
        outcome = self._on_done(finished) if self._on_done is not None else None
        outcome = outcome or f"{finished.version} is now serving."
        return f"{outcome}{stop_note(metrics)}{memory_note(metrics)}"

    def _failure(self, returncode: int, events: list[dict], last_lines: str) -> tuple[str, str]:
        """Why a round's process ended without a round: ("cancelled" or "failed", the message)."""
        ended = next((e for e in reversed(events) if e.get("event") in folder.ENDINGS), None)
        if self._cancelled.is_set():
            return "cancelled", "Round cancelled; the previous policy keeps serving."
        if ended is not None and ended["event"] == folder.CANCELLED:  # a stop nobody asked for in the app
            return "failed", (
                f"The round's process was stopped by {ended.get('signal') or 'a signal'} from outside the app (a "
                "shutdown, `kill`, or a job manager); the previous policy keeps serving. Start the round again."
            )
        if ended is not None:
            return "failed", ended["message"]
        message = f"{describe_exit(returncode)}; the previous policy keeps serving."
        return "failed", message + (f" Its last output: {last_lines}" if last_lines else "")


def _spawn(job: Path, processes: int) -> subprocess.Popen:
    """Start the round prepared in `job` in a process group of its own (cancel reaches every rank), its output in
    the folder's log, from the one thread that lives as long as the app (see _SPAWNER)."""
    with open(job / LOG_FILE, "w") as log_file:
        return _SPAWNER.submit(
            subprocess.Popen,
            round_command(job, processes),
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        ).result()


def clean_leftovers(runs_dir: Path) -> list[Path]:
    """Remove the staging folders in `runs_dir`, ending a round's process still running from one (see
    `RoundRunner.clean_leftovers`); returns what was removed."""
    leftovers = sorted(runs_dir.glob(STAGING_GLOB)) if runs_dir.is_dir() else []
    for job in leftovers:
        _end_orphan(job)
        shutil.rmtree(job, ignore_errors=True)
    return leftovers


class RunsFolderBusy(ValueError):
    """Another running app holds the runs folder."""


def claim_runs_folder(runs_dir: Path):
    """Hold `runs_dir` for as long as the returned file stays open (the app's lifetime): a second app on the same
    folder (with another database) would clean up, and end, the first one's running round. Raises RunsFolderBusy
    with what to do. The lock goes with the process, however it ends."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    handle = open(runs_dir / CLAIM_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise RunsFolderBusy(
            f"The runs folder {runs_dir} is in use by another running prefloop app"
            f"{f' (process {holder})' if holder else ''}. Stop that app, or start this one with --runs pointing "
            "at another folder."
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


# The kernel sends a child its parent-death signal when the *thread* that forked it ends, so rounds are
# started from this one thread, which ends only with the app (gradio's worker threads come and go).
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="round-spawner")
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """In a round's process: SIGKILL it when its parent dies (the app; torchrun for each rank). A round paused
    (SIGSTOP) while the sampler samples cannot run its own orphan watch, and would otherwise stay stopped
    forever. `parent`: the pid it must still have, else it ends now (the parent died before this ran)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def _end_orphan(job: Path) -> None:
    """SIGKILL the process group recorded in `job` if its leader still runs this round."""
    try:
        pid = int((job / PID_FILE).read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if str(job).encode() not in f.read():
                return
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 3) -> str:
    """The last few non-empty lines of a log file, joined ('' if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])
