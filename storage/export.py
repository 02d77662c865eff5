"""Write labels as a dataset in TRL's conversational formats, atomically.

Pairs: each row is what TRL's DPOTrainer takes as-is, plus the judgement id (to trace a row back to its vote)
and how its pair was chosen from the prompt's candidates ("random", a strategy such as "spread", "control",
"edit"; see labeling/selection.py):

    {"prompt":   [{"role": "user", "content": "..."}],
     "chosen":   [{"role": "assistant", "content": "..."}],
     "rejected": [{"role": "assistant", "content": "..."}],
     "judgement_id": 17, "selection": "random"}

Unpaired (TRL's KTOTrainer): one completion and its 👍 (true) / 👎 (false), traced to a judgement or a rating:

    {"prompt": [...], "completion": [{"role": "assistant", "content": "..."}], "label": true,
     "judgement_id": 17, "rating_id": null, "selection": "random"}

With arena votes included (decisive battles: the winner's completion chosen), every row also says where it came
from: `"source": "label"` (with its judgement / rating id) or `"source": "arena"` with its `"battle_id"`.

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

EXPORT_FORMATS = ("jsonl", "parquet", "hf")


def check_format(fmt: str) -> None:
    """Refuse an export format other than jsonl, parquet or hf."""
    if fmt not in EXPORT_FORMATS:
        raise StoreError(f"Unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}.")


def write_rows(rows: Sequence[dict], path: str | os.PathLike, fmt: str = "jsonl") -> int:
    """Write `rows` to `path` as jsonl, parquet or a datasets folder (hf); returns the number of rows."""
    check_format(fmt)
    if not rows:
        raise StoreError("Nothing to export yet: label some pairs first.")
    from datasets import Dataset  # imported here: the app should not pay for it at start-up

    dataset = Dataset.from_list(list(rows))
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
