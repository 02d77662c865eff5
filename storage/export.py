"""Write preference pairs as a dataset in TRL's conversational preference format, atomically.

Each row is what TRL's DPOTrainer takes as-is (plus the judgement id, to trace a row back to its vote):

    {"prompt":   [{"role": "user", "content": "..."}],
     "chosen":   [{"role": "assistant", "content": "..."}],
     "rejected": [{"role": "assistant", "content": "..."}],
     "judgement_id": 17}

The dataset is written into a temporary folder beside the target and then renamed onto it, so a failed or
interrupted export never leaves a half-written file, and an older export at the same path survives a failure.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from storage.errors import StoreError
from storage.models import PreferencePair

EXPORT_FORMATS = ("jsonl", "parquet", "hf")


def trl_rows(pairs: Sequence[PreferencePair]) -> list[dict]:
    """The pairs as rows of TRL's conversational preference format, in the given order."""
    return [
        {
            "prompt": [{"role": "user", "content": pair.prompt}],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
            "judgement_id": pair.judgement_id,
        }
        for pair in pairs
    ]


def check_format(fmt: str) -> None:
    """Refuse an export format other than jsonl, parquet or hf."""
    if fmt not in EXPORT_FORMATS:
        raise StoreError(f"Unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}.")


def write_pairs(pairs: Sequence[PreferencePair], path: str | os.PathLike, fmt: str = "jsonl") -> int:
    """Write `pairs` to `path` as jsonl, parquet or a datasets folder (hf); returns the number of rows."""
    check_format(fmt)
    if not pairs:
        raise StoreError("No preference pairs to export yet: label some pairs (pick left or right) first.")
    from datasets import Dataset  # imported here: the app should not pay for it at start-up

    dataset = Dataset.from_list(trl_rows(pairs))
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as err:
        raise StoreError(f"Cannot write to {target.parent}: {err}. Pick another folder.") from err
    try:
        staged = scratch / "export"
        _save(dataset, staged, fmt)
        _swap_in(staged, target, scratch / "previous")
    except OSError as err:
        raise StoreError(
            f"Could not write {target}: {err}. Nothing was changed there; pick another path or free disk space."
        ) from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return len(dataset)


def _save(dataset, path: Path, fmt: str) -> None:
    """Write the dataset to `path` in `fmt` (a file for jsonl and parquet, a folder for hf)."""
    if fmt == "jsonl":
        dataset.to_json(str(path), lines=True, force_ascii=False)
    elif fmt == "parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.save_to_disk(str(path))


def _swap_in(staged: Path, target: Path, previous: Path) -> None:
    """Rename `staged` onto `target`; an existing folder target is moved to `previous` first (renames only)."""
    if target.is_dir() and not target.is_symlink():
        target.rename(previous)
        try:
            staged.rename(target)
        except OSError:
            previous.rename(target)
            raise
    else:
        os.replace(staged, target)
