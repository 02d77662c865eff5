"""Export labels from the command line.

    python -m storage export pairs.jsonl --format jsonl --db data/prefloop.duckdb
    python -m storage export pairs_ds --format hf          # a datasets folder (save_to_disk)
    python -m storage export kto.jsonl --kind unpaired     # one completion + 👍/👎 per row, for KTO
    python -m storage export all.jsonl --include-arena     # decisive arena votes too, rows marked by `source`

Pairs are TRL's conversational preference format: prompt / chosen / rejected message lists, plus judgement_id.
Unpaired rows are TRL's unpaired format: prompt / completion / label (true = 👍), plus judgement_id or rating_id.
"""

from __future__ import annotations

import argparse
import sys

from storage import DEFAULT_DB, Store, StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB, help="DuckDB file of the app")
    db_too = argparse.ArgumentParser(add_help=False)  # --db after the subcommand as well as before it
    db_too.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file of the app")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the labels in TRL's format", parents=[db_too])
    export.add_argument("path")
    export.add_argument("--format", choices=["jsonl", "parquet", "hf"], default="jsonl")
    export.add_argument(
        "--kind",
        choices=["pairs", "unpaired"],
        default="pairs",
        help="pairs: prompt / chosen / rejected (DPO); unpaired: every label as one completion + 👍/👎 (KTO)",
    )
    export.add_argument(
        "--include-arena",
        action="store_true",
        help="also decisive arena votes (winner's completion chosen); every row gets source label / arena",
    )
    args = parser.parse_args(argv)
    try:
        with Store(args.db) as store:
            write = store.training_data.export_pairs if args.kind == "pairs" else store.training_data.export_unpaired
            count = write(args.path, args.format, include_arena=args.include_arena)
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {count} {'pairs' if args.kind == 'pairs' else 'unpaired rows'} to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
