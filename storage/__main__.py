"""Export preference pairs from the command line.

    python -m storage export pairs.jsonl --format jsonl --db data/prefloop.duckdb
    python -m storage export pairs_ds --format hf          # a datasets folder (save_to_disk)

Rows are TRL's conversational preference format: prompt / chosen / rejected message lists, plus judgement_id.
"""

from __future__ import annotations

import argparse
import sys

from storage import DEFAULT_DB, Store, StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB, help="DuckDB file of the app")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the preference pairs in TRL's format")
    export.add_argument("path")
    export.add_argument("--format", choices=["jsonl", "parquet", "hf"], default="jsonl")
    args = parser.parse_args(argv)
    try:
        with Store(args.db) as store:
            count = store.export_pairs(args.path, args.format)
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {count} pairs to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
