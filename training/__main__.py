"""Run a DPO round headless, with the same code path as the Train tab's button.

    python -m training --db data/prefloop.duckdb            # continue the serving policy on new pairs
    python -m training --fresh --epochs 3 --beta 0.2        # fresh adapter from the base on all pairs
    python -m training --help

Several processes (DDP-style; see training/distributed.py):

    torchrun --nproc_per_node 2 -m training ...                       # CPU or GPUs
    accelerate launch --multi_gpu --num_processes 2 -m training ...   # GPUs (on a CPU too: gloo)

The finished round becomes the serving version recorded in the store, so the app serves it on its next
start (a running app holds the database lock: stop it first, or press "Start round" in its Train tab).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from training.cli import add_common_arguments
from training.config import DPOConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--fresh", action="store_true", help="Fresh adapter from the base on all pairs.")
    parser.add_argument("--no-serve", action="store_true", help="Do not make the new round the serving version.")
    for field in dataclasses.fields(DPOConfig):
        if field.name == "continue_from_serving":
            continue
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{field.metadata.get('help', '')} (default: {field.default})"
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        elif field.name == "target_modules":
            parser.add_argument(flag, nargs="+", default=list(field.default), help=help_text)
        else:
            kind = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str}[str(field.type)]
            parser.add_argument(flag, type=kind, default=field.default, help=help_text)
    return parser


def main(args: argparse.Namespace) -> int:
    from models import ModelLoadError, resolve_model
    from training import distributed
    from training.round import TrainingError, run_round

    names = {f.name for f in dataclasses.fields(DPOConfig)} - {"continue_from_serving"}
    w = distributed.world()
    if w.size > 1:
        print(f"process {w.rank} of world size {w.size}", file=sys.stderr, flush=True)
    try:
        config = DPOConfig(continue_from_serving=not args.fresh, **{n: getattr(args, n) for n in names})
        model = resolve_model(args.model, Path(args.model_cache)) if w.main else None
        model = distributed.share(model, w)
        if not w.main:  # a follower: train on the round rank 0 plans and records
            run_args = distributed.share(None, w)
            if run_args is None:
                return 2  # rank 0 failed before the round and reports why
            run_round(**run_args, model=model, device=args.device)
            return 0
        finished = _lead_round(args, config, model, w)
    except (ValueError, ModelLoadError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {
        "round": finished.version,
        "adapter": finished.adapter_path,
        "pairs": finished.n_pairs,
        "ratings": finished.n_ratings,
        "heldout_after": finished.metrics.get("heldout_after"),
    }
    print(json.dumps(summary))
    return 0


def _lead_round(args: argparse.Namespace, config: DPOConfig, model: str, w):
    """Rank 0 (or the only process): plan, record and serve the round; hand its arguments to the others."""
    from storage import Store, StoreError
    from training import distributed
    from training.round import TrainingError
    from training.rounds import train_round

    shared = False

    def hand_over(_round_id: int, run_args: dict) -> None:
        nonlocal shared
        distributed.share(run_args, w)
        shared = True

    def show(s: dict) -> None:
        print(
            f"step {s['step']}/{s['total_steps']} loss {s['loss']:.4f} margin {s['margin']:.3f} "
            f"accuracy {s['accuracy']:.2f}",
            flush=True,
        )

    try:
        with Store(args.db) as store:
            finished = train_round(
                store,
                config,
                model=model,
                runs_dir=Path(args.runs),
                device=args.device,
                on_progress=show,
                on_start=hand_over,
            )
            if not args.no_serve:
                store.set_serving(finished.version)
        return finished
    except (StoreError, TrainingError, ValueError) as err:
        if not shared:
            distributed.share(None, w)  # release the followers
        raise TrainingError(str(err)) from err


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
