"""Benchmark: importing a large prompt file, as `python -m labeling import-prompts` and the Label tab do.

    python -m bench.import_prompts                      # 200,000 prompts; the row-at-a-time reference on 5,000
    python -m bench.import_prompts --prompts 50000 --reference-rows 2000

Times reading the JSONL file (`read_prompts`) and storing it (`store.prompts.add_many`: one set-based INSERT from an
Arrow table, all or nothing) into a DuckDB file, then a second import of the same file (every prompt already
there). The reference is the earlier way, a SELECT and an INSERT per prompt in one transaction, timed on
`--reference-rows` prompts in the same run. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

import duckdb

from bench.startup import cpu_flags
from labeling.prompts import read_prompts
from storage import Store


def row_at_a_time(path: Path, texts: list[str]) -> float:
    """The reference: per prompt, look it up and insert it if new, all in one transaction. Returns seconds."""
    Store(path).close()  # the schema
    con = duckdb.connect(str(path))
    start = time.perf_counter()
    con.begin()
    for text in texts:
        if con.execute("SELECT id FROM prompts WHERE text = ?", [text]).fetchone() is None:
            con.execute("INSERT INTO prompts (text, source, created_at) VALUES (?, 'ref', ?)", [text, datetime.now()])
    con.commit()
    seconds = time.perf_counter() - start
    con.close()
    return seconds


def main(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "prompts.jsonl"
        with open(source, "w") as f:
            for i in range(args.prompts):
                f.write(json.dumps({"prompt": f"Prompt {i}: explain idea number {i} to a curious reader."}) + "\n")
        start = time.perf_counter()
        texts = read_prompts(source)
        read_s = time.perf_counter() - start
        with Store(Path(tmp) / "ours.duckdb") as store:
            start = time.perf_counter()
            added = store.prompts.add_many(texts, source=source.name)
            insert_s = time.perf_counter() - start
            start = time.perf_counter()
            again = store.prompts.add_many(texts, source=source.name)
            again_s = time.perf_counter() - start
            assert added == args.prompts and again == 0 and store.prompts.count() == args.prompts
        reference_s = row_at_a_time(Path(tmp) / "reference.duckdb", texts[: args.reference_rows])
    figures = {
        "prompts": args.prompts,
        "read_s": round(read_s, 2),
        "insert_s": round(insert_s, 2),
        "import_s": round(read_s + insert_s, 2),
        "reimport_s": round(again_s, 2),
        "ours_rows_per_s": round(args.prompts / insert_s),
        "reference_rows": args.reference_rows,
        "reference_rows_per_s": round(args.reference_rows / reference_s),
    }
    figures["speedup_vs_reference"] = round(figures["ours_rows_per_s"] / figures["reference_rows_per_s"], 1)
    print(
        f"{args.prompts} prompts: read {read_s:.2f} s + store {insert_s:.2f} s (again, all known: {again_s:.2f} s); "
        f"{figures['ours_rows_per_s']} rows/s vs row at a time {figures['reference_rows_per_s']} rows/s "
        f"({figures['speedup_vs_reference']}×)",
        flush=True,
    )
    print(json.dumps(figures | {"duckdb": duckdb.__version__, "cpu_flags": cpu_flags()}))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=200_000)
    parser.add_argument("--reference-rows", type=int, default=5_000)
    main(parser.parse_args())
