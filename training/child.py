"""A round's own process: trains the round prepared in a folder, never opening the database.

    python -m training.child --round-dir runs/.round_003.tmp --nice 10
    python -m torch.distributed.run --standalone --nproc_per_node N -m training.child --round-dir ...   # N GPUs

The app and `python -m training` start it (training/runner.py) after writing the folder (training/plan.py); it
appends its progress events to the folder's progress file (training/folder.py) and renames the folder into place
when the round is complete. SIGTERM (Cancel) stops it at the next micro-batch.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from training import folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.child", description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-dir", required=True, help="Train the round prepared in this folder (no database)")
    parser.add_argument("--nice", type=int, default=0, help="Lower this process's CPU priority by this much")
    return parser


def run_prepared(job: Path, nice: int = 0) -> int:
    """The round's own process (each rank under torchrun): train from `job`, append progress events to its
    progress file, rename it into place when complete. Exit codes: 0 done, 2 failed with a message, 3 cancelled,
    1 crashed."""
    if nice:
        os.nice(nice)
    stop = threading.Event()
    heard: list[str] = []  # the signals that asked it to stop: the app's Cancel, or someone outside it

    def on_signal(number, _frame) -> None:
        heard.append(signal.Signals(number).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    _stop_when_orphaned(stop)

    from training import distributed
    from training.runner import die_with_parent

    if distributed.world().size > 1:  # a rank under torchrun: the app's SIGKILL on its death reached torchrun
        die_with_parent()
    from training.plan import read_job
    from training.trainer import RoundCancelled, TrainingError, run_round

    w = distributed.world()
    if w.size > 1:
        print(f"process {w.rank} of world size {w.size}", file=sys.stderr, flush=True)
    progress = open(job / folder.PROGRESS_FILE, "a", encoding="utf-8") if w.main else None

    def emit(event: dict) -> None:
        if progress is not None:
            folder.write_event(progress, event)

    try:
        emit(folder.stage_event("loading the model and scoring the labels before training…"))
        run_round(
            **read_job(job),
            on_progress=lambda stats: emit(folder.step_event(stats)),
            on_phase=lambda *phase: emit(folder.phase_event(*phase)),
            should_stop=stop.is_set,
        )
        return 0
    except RoundCancelled as err:
        emit(folder.cancelled_event(str(err), heard[0] if heard else None))
        return 3
    except (TrainingError, ValueError) as err:
        emit(folder.failed_event(str(err)))
        return 2
    except Exception as err:  # out of memory and the like: report; the app keeps the previous policy
        traceback.print_exc()
        emit(folder.failed_event(f"Round failed ({type(err).__name__}: {err}); the previous policy keeps serving."))
        return 1


def _stop_when_orphaned(stop: threading.Event) -> None:
    """Stop training if the process that started this one goes away (an app killed mid-round)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


if __name__ == "__main__":
    arguments = build_parser().parse_args()
    sys.exit(run_prepared(Path(arguments.round_dir), arguments.nice))
