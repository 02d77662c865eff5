"""Prompt management from the command line.

    python -m labeling import-prompts prompts.jsonl --db data/prefloop.duckdb
    python -m labeling import-prompts eval.jsonl --eval-only   # held out for the arena: never labeled or trained on
    python -m labeling add-prompt "Explain tides to a child." --db data/prefloop.duckdb

Files: JSONL / CSV (a prompt, text, question or instruction field), TXT (one prompt a line), parquet, or a
`datasets` folder. An import is all or nothing: a broken line names file, line and field, and imports nothing.
"""

from __future__ import annotations

import argparse
import sys

from storage import DEFAULT_DB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labeling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=DEFAULT_DB, help="DuckDB file of the app")
    db_too = argparse.ArgumentParser(add_help=False)  # --db after the subcommand as well as before it
    db_too.add_argument("--db", default=argparse.SUPPRESS, help="DuckDB file of the app")
    sub = parser.add_subparsers(dest="command", required=True)
    importer = sub.add_parser("import-prompts", help="import a prompt file or datasets folder", parents=[db_too])
    importer.add_argument("path")
    importer.add_argument(
        "--eval-only",
        action="store_true",
        help="hold the new prompts out for the Arena: never sampled for labeling, never trained on",
    )
    sub.add_parser("add-prompt", help="add one prompt", parents=[db_too]).add_argument("text")
    args = parser.parse_args(argv)

    from labeling.prompts import PromptFileError, read_prompts
    from storage import Store, StoreError

    try:
        with Store(args.db) as store:
            if args.command == "import-prompts":
                added = store.prompts.add_many(read_prompts(args.path), source=args.path, eval_only=args.eval_only)
                held = f" ({store.prompts.count_eval_only()} held out for the arena)" if args.eval_only else ""
                print(f"imported {added} new prompts; {store.prompts.count()} in {args.db}{held}")
            else:
                print(f"added prompt #{store.prompts.add(args.text)}")
    except (PromptFileError, StoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
