"""Run a DPO round headless, through the same runner as the Train tab's button.

    python -m training --db data/prefloop.duckdb            # continue the serving policy on new labels
    python -m training --fresh --epochs 3 --beta 0.2        # fresh adapter from the base on all labels
    python -m training --processes 2                        # one round over 2 processes (GPUs, or CPU: gloo)
    python -m training --help

Like the app, it plans the round from the database, writes the round's folder (its request and the exact
labels) and trains it in a child process, `python -m training.child --round-dir runs/.round_NNN.tmp`, which
never opens the database (several processes: the same under torchrun). The finished round becomes the serving
version recorded in the store, so the app serves it on its next start (a running app holds the database
lock: stop it first, or press "Start round" in its Train tab) — unless it fails the health check
(training/gate.py): then it is held back as the candidate and the command exits with code 3 (`--serve-anyway`
serves it all the same, recorded).

The command keeps its name, `python -m training` (training/__main__.py only calls `main` here); its code lives
here, above the round's parts, because it composes them through `open_services` as the app does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from models import ModelLoadError
from services.config import ServiceConfig
from services.root import Services, open_services
from storage import Round, StoreError
from training.cli import add_common_arguments, add_config_arguments
from training.config import DPOConfig
from training.gate import failed
from training.trainer import TrainingError

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
    add_config_arguments(parser, DPOConfig, skip=UI_ONLY)
    return parser


def main(args: argparse.Namespace) -> int:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("error: start one process with --processes N; it launches the round's N processes", file=sys.stderr)
        return 2
    if args.processes is not None and args.processes < 1:
        print(f"error: --processes must be >= 1, got {args.processes}", file=sys.stderr)
        return 2
    return run_headless(args)


def show_step(stats: dict) -> None:
    """One optimizer step, as the command prints it."""
    print(
        f"step {stats['step']}/{stats['total_steps']} loss {stats['loss']:.4f} margin {stats['margin']:.3f} "
        f"accuracy {stats['accuracy']:.2f}",
        flush=True,
    )


def run_headless(args: argparse.Namespace) -> int:
    """Plan from the database, train in a child process, record the round (and serve it unless --no-serve)."""
    names = {f.name for f in dataclasses.fields(DPOConfig)} - UI_ONLY
    try:
        config = DPOConfig(continue_from_serving=not args.fresh, **{n: getattr(args, n) for n in names})
        options = ServiceConfig.from_args(args)
        services = open_services(options, serving=False, on_step=show_step, serve_rounds=not args.no_serve)
    except (ValueError, ModelLoadError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with services.store:
        try:
            round_id = services.rounds.start(config, processes=args.processes)
        except (ValueError, StoreError, TrainingError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            services.rounds.wait()
        except KeyboardInterrupt:
            services.rounds.cancel()
            services.rounds.wait()
        status = services.rounds.status()
        if status.state != "done":
            print(f"error: {status.message}", file=sys.stderr)
            return 2
        finished = services.store.rounds.get(round_id)
        if not passes_gate(services, finished, args):
            return 3
    print(json.dumps(summary(finished)))
    return 0


def passes_gate(services: Services, finished: Round, args: argparse.Namespace) -> bool:
    """Whether the command succeeds given the round's health check: a round that failed it serves only with
    --serve-anyway (recorded; with --no-serve it is reported as failed)."""
    reasons = failed(finished.metrics)
    if reasons and args.serve_anyway and not args.no_serve:
        services.versions.serve(finished.version, "python -m training --serve-anyway")
        print(
            f"{finished.version} is now serving, although it failed the health check: {'; '.join(reasons)} (recorded).",
            file=sys.stderr,
        )
    elif reasons:
        print(
            f"error: {finished.version} failed the health check and was not served; the previous version keeps "
            f"serving. Failed: {'; '.join(reasons)}. Serve it anyway from the app's Train tab, or train again "
            "with --serve-anyway.",
            file=sys.stderr,
        )
        return False
    return True


def summary(finished: Round) -> dict:
    """The finished round as the command prints it, one JSON line."""
    return {
        "round": finished.version,
        "adapter": finished.adapter_path,
        "pairs": finished.n_pairs,
        "arena": finished.n_arena,
        "ratings": finished.n_ratings,
        "heldout_after": finished.metrics.get("heldout_after"),
        "gate": finished.metrics.get("gate"),
    }
