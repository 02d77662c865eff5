"""Run a DPO round headless, through the same runner as the Train tab's button.

    python -m training --db data/prefloop.duckdb            # continue the serving policy on new labels
    python -m training --fresh --epochs 3 --beta 0.2        # fresh adapter from the base on all labels
    python -m training --processes 2                        # one round over 2 processes (GPUs, or CPU: gloo)
    python -m training --help

Like the app, it plans the round from the database, writes the round's folder (its request and the exact
labels) and trains it in a child process, `python -m training --round-dir runs/.round_NNN.tmp`, which never
opens the database (several processes: the same under torchrun). The finished round becomes the serving
version recorded in the store, so the app serves it on its next start (a running app holds the database
lock: stop it first, or press "Start round" in its Train tab) — unless it fails the health check
(training/gate.py): then it is held back as the candidate and the command exits with code 3 (`--serve-anyway`
serves it all the same, recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from training.cli import add_common_arguments, add_config_arguments
from training.config import DPOConfig

UI_ONLY = {"continue_from_serving"}  # set by --fresh here, by a checkbox in the app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--fresh", action="store_true", help="Fresh adapter from the base on all labels.")
    parser.add_argument("--no-serve", action="store_true", help="Do not make the new round the serving version.")
    parser.add_argument(
        "--serve-anyway",
        action="store_true",
        help="Serve the round even if it fails the health check (recorded); without it such a round is held back "
        "as the candidate and the command exits with code 3.",
    )
    parser.add_argument(
        "--processes", type=int, default=None, help="Processes for the round (default: one per GPU, else 1)"
    )
    parser.add_argument("--round-dir", default=None, help="Train the round prepared in this folder (no database)")
    parser.add_argument("--nice", type=int, default=0, help="With --round-dir: lower this process's CPU priority")
    add_config_arguments(parser, DPOConfig, skip=UI_ONLY)
    return parser


def main(args: argparse.Namespace) -> int:
    if args.round_dir is not None:
        return run_prepared(Path(args.round_dir), args.nice)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("error: start one process with --processes N; it launches the round's N processes", file=sys.stderr)
        return 2
    if args.processes is not None and args.processes < 1:
        print(f"error: --processes must be >= 1, got {args.processes}", file=sys.stderr)
        return 2
    return run_headless(args)


def run_headless(args: argparse.Namespace) -> int:
    """Plan from the database, train in a child process, record the round (and serve it unless --no-serve)."""
    from models import ModelLoadError
    from services import ServiceConfig, open_services
    from storage import StoreError
    from training.gate import failed
    from training.trainer import TrainingError

    names = {f.name for f in dataclasses.fields(DPOConfig)} - UI_ONLY

    def show(s: dict) -> None:
        print(
            f"step {s['step']}/{s['total_steps']} loss {s['loss']:.4f} margin {s['margin']:.3f} "
            f"accuracy {s['accuracy']:.2f}",
            flush=True,
        )

    try:
        config = DPOConfig(continue_from_serving=not args.fresh, **{n: getattr(args, n) for n in names})
        services = open_services(ServiceConfig.from_args(args), serving=False)
    except (ValueError, ModelLoadError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with services.store:
        runner = services.runner
        runner.on_progress = show
        runner.on_done = None if args.no_serve else services.rounds.round_finished
        try:
            round_id = runner.start(config, processes=args.processes)
        except (ValueError, StoreError, TrainingError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            runner.wait()
        except KeyboardInterrupt:
            runner.cancel()
            runner.wait()
        status = runner.status()
        if status["state"] != "done":
            print(f"error: {status['message']}", file=sys.stderr)
            return 2
        finished = services.store.rounds.get(round_id)
        reasons = failed(finished.metrics)
        if reasons and args.serve_anyway and not args.no_serve:
            services.versions.serve(finished.version, "python -m training --serve-anyway")
            print(
                f"{finished.version} is now serving, although it failed the health check: {'; '.join(reasons)} "
                "(recorded).",
                file=sys.stderr,
            )
        elif reasons:
            print(
                f"error: {finished.version} failed the health check and was not served; the previous version keeps "
                f"serving. Failed: {'; '.join(reasons)}. Serve it anyway from the app's Train tab, or train again "
                "with --serve-anyway.",
                file=sys.stderr,
            )
            return 3
    summary = {
        "round": finished.version,
        "adapter": finished.adapter_path,
        "pairs": finished.n_pairs,
        "arena": finished.n_arena,
        "ratings": finished.n_ratings,
        "heldout_after": finished.metrics.get("heldout_after"),
        "gate": finished.metrics.get("gate"),
    }
    print(json.dumps(summary))
    return 0


def run_prepared(job: Path, nice: int = 0) -> int:
    """The round's own process (each rank under torchrun): train from `job`, append progress events to its
    progress.jsonl, rename it into place when complete. SIGTERM (Cancel) stops it at the next micro-batch."""
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
    from training.folder import PROGRESS_FILE
    from training.plan import read_job
    from training.trainer import RoundCancelled, TrainingError, run_round

    w = distributed.world()
    if w.size > 1:
        print(f"process {w.rank} of world size {w.size}", file=sys.stderr, flush=True)
    progress = open(job / PROGRESS_FILE, "a", encoding="utf-8") if w.main else None

    def emit(event: dict) -> None:
        if progress is not None:
            progress.write(json.dumps(event) + "\n")
            progress.flush()

    try:
        emit({"event": "stage", "message": "loading the model and scoring the labels before training…"})
        run_round(
            **read_job(job),
            on_progress=lambda s: emit({"event": "step"} | s),
            on_phase=lambda name, done, total, seconds: emit(
                {"event": "phase", "phase": name, "done": done, "total": total, "seconds": seconds}
            ),
            should_stop=stop.is_set,
        )
        return 0
    except RoundCancelled as err:
        emit({"event": "cancelled", "message": str(err), "signal": heard[0] if heard else None})
        return 3
    except (TrainingError, ValueError) as err:
        emit({"event": "failed", "message": str(err)})
        return 2
    except Exception as err:  # out of memory and the like: report; the app keeps the previous policy
        traceback.print_exc()
        emit(
            {
                "event": "failed",
                "message": f"Round failed ({type(err).__name__}: {err}); the previous policy keeps serving.",
            }
        )
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
    sys.exit(main(build_parser().parse_args()))
