"""Exports: every label of a kind written as a file in the exports folder, named by kind and time.

exports = Exports(store, Path("exports"))
path, rows = exports.export("pairs", "jsonl")        # exports/pairs-20250101-120000.jsonl
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from storage import Store, StoreError
from storage.export import check_format

EXPORT_KINDS = {  # kind: its rows, as a message and the export choice say
    "pairs": "pairs (prompt / chosen / rejected, for DPO)",
    "unpaired": "unpaired rows (prompt / completion / 👍-👎 label, for KTO)",
}
EXPORT_SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}  # hf: a datasets folder


class Exports:
    def __init__(self, store: Store, folder: Path):
        self.store, self.folder = store, folder

    def export(self, kind: str, fmt: str, include_arena: bool = False) -> tuple[Path, int]:
        """Write every label of `kind` (pairs / unpaired) as `fmt` into the exports folder, named by kind and
        time; a datasets folder (hf) comes zipped. include_arena: decisive arena votes too, each row marked by
        its `source` (see `store.training_data.export_pairs`). Returns (file, rows)."""
        if kind not in EXPORT_KINDS:
            raise StoreError(f"Unknown export kind {kind!r}: pick one of {', '.join(EXPORT_KINDS)}.")
        check_format(fmt)
        stem = self.folder / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        target = stem.with_suffix(EXPORT_SUFFIXES[fmt])
        write = self.store.training_data.export_pairs if kind == "pairs" else self.store.training_data.export_unpaired
        count = write(target, fmt, include_arena=include_arena)
        if fmt == "hf":
            target = Path(shutil.make_archive(str(stem), "zip", root_dir=target))
        return target, count
