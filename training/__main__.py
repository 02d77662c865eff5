"""Run a DPO round headless, with the same code path as the Train tab's button.

    python -m training --db data/prefloop.duckdb            # continue the serving policy on new pairs
    python -m training --fresh --epochs 3 --beta 0.2        # fresh adapter from the base on all pairs
    python -m training --help

The finished round becomes the serving version recorded in the store, so the app serves it on its next
start (a running app holds the database lock: stop it first, or press "Start round" in its Train tab).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from training.config import DPOConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="data/prefloop.duckdb", help="DuckDB file with the labels.")
    parser.add_argument("--model", default=None, help="Base model folder or hub id (default: bundled SmolLM2).")
    parser.add_argument("--runs", default="runs", help="Folder for round_NNN/ outputs.")
    parser.add_argument("--model-cache", default="data/models", help="Where the bundled model is converted once.")
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
            kind = {"int": int, "int | None": int, "float": float, "str": str}[str(field.type)]
            parser.add_argument(flag, type=kind, default=field.default, help=help_text)
    return parser


def main(args: argparse.Namespace) -> int:
    from storage import Store, StoreError
    from training.model import ModelLoadError, resolve_model
    from training.round import TrainingError
    from training.rounds import train_round

    names = {f.name for f in dataclasses.fields(DPOConfig)} - {"continue_from_serving"}
    try:
        config = DPOConfig(continue_from_serving=not args.fresh, **{n: getattr(args, n) for n in names})
        model = resolve_model(args.model, Path(args.model_cache))
        with Store(args.db) as store:
            finished = train_round(
                store,
                config,
                model=model,
                runs_dir=Path(args.runs),
                on_progress=lambda s: print(
                    f"step {s['step']}/{s['total_steps']} loss {s['loss']:.4f} "
                    f"margin {s['margin']:.3f} accuracy {s['accuracy']:.2f}",
                    flush=True,
                ),
            )
            if not args.no_serve:
                store.set_serving(finished.version)
    except (ValueError, StoreError, ModelLoadError, TrainingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "round": finished.version,
                "adapter": finished.adapter_path,
                "pairs": finished.n_pairs,
                "heldout_after": finished.metrics.get("heldout_after"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
