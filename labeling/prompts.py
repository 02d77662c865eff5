"""Prompts: the shipped starter set and importers for JSONL, CSV, TXT, parquet and `datasets` folders.

    read_prompts("my_prompts.csv")     # -> ["...", ...] or PromptFileError naming file, line and field

An import is all or nothing: any bad line raises, and the caller stores nothing.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

PROMPT_FIELDS = ("prompt", "text", "question", "instruction")
FORMATS = "JSONL (.jsonl/.json), CSV (.csv), TXT (.txt, one prompt a line), parquet (.parquet) or a datasets folder"
STARTER_FILE = Path(__file__).with_name("starter_prompts.jsonl")


class PromptFileError(ValueError):
    """An unreadable import; the message names the file, the line or row, the field, and what to do."""


def starter_prompts() -> list[str]:
    """The varied prompts shipped with prefloop, loaded into an empty store on first start."""
    return read_prompts(STARTER_FILE)


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Read prompts from a file or datasets folder; stripped, first occurrence of each kept."""
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"{path} does not exist. Pick a {FORMATS}.")
    if path.is_dir():
        prompts = _from_records(path, _dataset_rows(path), "row")
    elif path.suffix.lower() in (".jsonl", ".json"):
        prompts = _from_records(path, _jsonl_rows(path), "line")
    elif path.suffix.lower() == ".csv":
        prompts = _from_records(path, _csv_rows(path), "line")
    elif path.suffix.lower() == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        prompts = [line.strip() for line in lines if line.strip()]
    elif path.suffix.lower() == ".parquet":
        prompts = _from_records(path, _parquet_rows(path), "row")
    else:
        raise PromptFileError(f"{path}: unknown file type {path.suffix!r}. Use {FORMATS}.")
    if not prompts:
        raise PromptFileError(f"{path} holds no prompts; nothing was imported.")
    return list(dict.fromkeys(prompts))


def _from_records(path: Path, rows, unit: str) -> list[str]:
    """Pick the prompt field of each (number, record); the first of PROMPT_FIELDS present names the column."""
    prompts = []
    for number, record in rows:
        field = next((f for f in PROMPT_FIELDS if f in record), None)
        if field is None:
            raise PromptFileError(
                f"{path}, {unit} {number}: no 'prompt' field (expected one of {', '.join(PROMPT_FIELDS)}; found "
                f"{', '.join(map(str, record)) or 'none'}). Rename the column and import again; nothing was imported."
            )
        text = _message_text(record[field])
        if not isinstance(text, str) or not text.strip():
            raise PromptFileError(
                f"{path}, {unit} {number}: field '{field}' is empty or not text. Fill or remove it and import "
                "again; nothing was imported."
            )
        prompts.append(text.strip())
    return prompts


def _message_text(value):
    """A TRL conversational prompt (a list of messages) gives its last user message."""
    if isinstance(value, list):
        users = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else None
    return value


def _jsonl_rows(path: Path):
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PromptFileError(
                    f"{path}, line {number}: not valid JSON ({err.msg}). Fix or remove that line and import again; "
                    "nothing was imported."
                ) from err
            if not isinstance(record, dict):
                raise PromptFileError(f'{path}, line {number}: expected a JSON object like {{"prompt": "..."}}.')
            yield number, record


def _csv_rows(path: Path):
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not set(PROMPT_FIELDS) & set(reader.fieldnames):
            raise PromptFileError(
                f"{path}, line 1: no 'prompt' column (expected one of {', '.join(PROMPT_FIELDS)}; found "
                f"{', '.join(reader.fieldnames or []) or 'no header'}). Add a header row and import again."
            )
        for record in reader:
            yield reader.line_num, {k: v for k, v in record.items() if k is not None}


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:
        raise PromptFileError(f"{path}: not a readable parquet file ({err}).") from err
    yield from enumerate(table.to_pylist(), start=1)


def _dataset_rows(path: Path):
    from datasets import DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as err:
        raise PromptFileError(f"{path}: not a folder written by datasets' save_to_disk ({err}).") from err
    if isinstance(dataset, DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    yield from enumerate(dataset, start=1)
