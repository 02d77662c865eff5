"""Prompts: the shipped starter set and importers for JSONL, CSV, TXT, parquet and `datasets` folders.

    read_prompts("my_prompts.csv")     # -> ["...", ...] or PromptFileError naming file, line and field

Accepted inputs (the prompt column is the first of PROMPT_FIELDS present, matched case-insensitively):

* ``.jsonl`` / ``.json``: one JSON object per line, e.g. ``{"prompt": "Why is the sky blue?"}``; a ``.json``
  file holding one JSON array of such objects also works. A TRL conversational prompt (a list of
  ``{"role": ..., "content": ...}`` messages) gives its last user message.
* ``.csv``: a header row naming the prompt column, then one prompt per row.
* ``.txt``: one prompt per non-blank line.
* ``.parquet``: a prompt column.
* a folder written by ``datasets.Dataset.save_to_disk`` (a DatasetDict gives its "train" split or its only split).

An import is all or nothing: any bad line raises PromptFileError, and the caller stores nothing. Every prompt is
stripped, and a prompt repeated within one file is kept once, where it first appears.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

PROMPT_FIELDS = ("prompt", "text", "question", "instruction")
FORMATS = "JSONL (.jsonl/.json), CSV (.csv), TXT (.txt, one prompt a line), parquet (.parquet) or a datasets folder"
STARTER_FILE = Path(__file__).with_name("starter_prompts.jsonl")
NOTHING_IMPORTED = "nothing was imported"

# (where, value): where is "line 3" or "row 3", value is the raw cell to turn into a prompt.
Located = tuple[str, Any]


class PromptFileError(ValueError):
    """Raised for an unreadable import; message names the file, the 1-based line (or row), and the field, and says
    what to do."""


def starter_prompts() -> list[str]:
    """The varied prompts shipped beside this module, loaded into an empty store on first start."""
    return read_prompts(STARTER_FILE)


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Read the prompts of a file or `datasets` folder: stripped, each kept once in first-seen order.

    Raises PromptFileError (naming the file, line or row, and field) on the first problem, so either every
    prompt of the file is returned or none is.
    """
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"{path} does not exist. Check the path, then pick a {FORMATS}.")
    suffix = path.suffix.lower()
    if path.is_dir():
        prompts = _column_prompts(path, *_dataset_column(path))
    elif suffix in (".jsonl", ".json"):
        prompts = _record_prompts(path, _json_records(path))
    elif suffix == ".csv":
        prompts = _column_prompts(path, *_csv_column(path))
    elif suffix == ".txt":
        prompts = _txt_prompts(_read_text(path))
    elif suffix == ".parquet":
        prompts = _column_prompts(path, *_parquet_column(path))
    else:
        kind = f"file type {path.suffix!r}" if path.suffix else "file type (no suffix)"
        raise PromptFileError(f"{path}: unknown {kind}. Use {FORMATS}.")
    if not prompts:
        raise PromptFileError(f"{path} holds no prompts; {NOTHING_IMPORTED}. Add at least one prompt and try again.")
    return unique(prompts)


def unique(prompts: Iterable[str]) -> list[str]:
    """Each prompt once, in the order it first appears."""
    return list(dict.fromkeys(prompts))


def prompt_field(names: Iterable[str]) -> str | None:
    """The name among `names` that holds the prompt: the first of PROMPT_FIELDS present (case and spaces ignored)."""
    names = [n for n in names if isinstance(n, str)]
    for wanted in PROMPT_FIELDS:
        for name in names:
            if name.strip().lower() == wanted:
                return name
    return None


def prompt_text(path: Path, where: str, field: str, value: Any) -> str:
    """The stripped prompt in one cell, or PromptFileError saying what is wrong with it and how to fix it.

    A cell is either text or a TRL conversational prompt: a list of {"role", "content"} messages, whose last
    user message is the prompt.
    """
    unit = where.split()[0]
    if isinstance(value, list):
        value = _last_user_message(path, where, field, value)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PromptFileError(
            f"{path}, {where}: field '{field}' is empty. Fill it in or remove that {unit}, then import again; "
            f"{NOTHING_IMPORTED}."
        )
    if not isinstance(value, str):
        raise PromptFileError(
            f"{path}, {where}: field '{field}' holds {type(value).__name__} {value!r:.60}, not text. Write the "
            f"prompt as a string or remove that {unit}, then import again; {NOTHING_IMPORTED}."
        )
    return value.strip()


def _last_user_message(path: Path, where: str, field: str, messages: list) -> Any:
    """The content of the last {"role": "user"} message; its text parts joined if it is a list of parts."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise PromptFileError(
            f"{path}, {where}: field '{field}' is a list but holds no message with role 'user'. Give it a "
            f'[{{"role": "user", "content": "..."}}] message or plain text, then import again; {NOTHING_IMPORTED}.'
        )
    content = users[-1].get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        content = "\n".join(parts)
    return content


def _missing_field(path: Path, where: str, kind: str, found: Sequence[str]) -> PromptFileError:
    """The error for a record or table without any of PROMPT_FIELDS."""
    location = f"{path}, {where}" if where else str(path)
    listed = ", ".join(map(str, found)) or "none"
    return PromptFileError(
        f"{location}: no 'prompt' {kind} (expected one of {', '.join(PROMPT_FIELDS)}). Found {kind}s: {listed}. "
        f"Rename the {kind} that holds the prompts and import again; {NOTHING_IMPORTED}."
    )


def _record_prompts(path: Path, records: Iterable[tuple[str, dict]]) -> list[str]:
    """Prompts from (where, record) pairs, each record naming its own prompt field (JSON)."""
    prompts = []
    for where, record in records:
        field = prompt_field(record)
        if field is None:
            raise _missing_field(path, where, "field", list(record))
        prompts.append(prompt_text(path, where, field, record[field]))
    return prompts


def _column_prompts(path: Path, field: str, cells: Iterable[Located]) -> list[str]:
    """Prompts from one column's (where, value) cells (CSV, parquet, datasets)."""
    return [prompt_text(path, where, field, value) for where, value in cells]


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading byte-order mark is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise PromptFileError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}). Save it as UTF-8 and import again; "
            f"{NOTHING_IMPORTED}."
        ) from err


def _txt_prompts(text: str) -> list[str]:
    """One prompt per non-blank line, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _json_records(path: Path) -> list[tuple[str, dict]]:
    """("line n", object) for each non-blank JSONL line, or ("item n", object) for a file holding one JSON array."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        return _json_array_records(path, text)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(
                f"{path}, line {number}: not valid JSON ({_json_problem(err)}). Fix or remove that line and import "
                f"again; {NOTHING_IMPORTED}."
            ) from err
        except RecursionError:
            raise PromptFileError(_too_deep(path, f"line {number}")) from None
        records.append((f"line {number}", _json_object(path, f"line {number}", record)))
    return records


def _too_deep(path: Path, where: str) -> str:
    return (
        f"{path}, {where}: JSON nested too deeply to read. A prompt is a string in a 'prompt' (or text, question, "
        f"instruction) field; flatten that line and import again; {NOTHING_IMPORTED}."
    )


def _json_array_records(path: Path, text: str) -> list[tuple[str, dict]]:
    """("item n", object) for each element of a file holding one JSON array."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise PromptFileError(
            f"{path}, line {err.lineno}: not valid JSON ({_json_problem(err)}). Fix the file and import again; "
            f"{NOTHING_IMPORTED}."
        ) from err
    except RecursionError:
        raise PromptFileError(_too_deep(path, "its JSON array")) from None
    return [(f"item {n}", _json_object(path, f"item {n}", item)) for n, item in enumerate(items, start=1)]


def _json_problem(err: json.JSONDecodeError) -> str:
    """What the JSON parser disliked and at which column, e.g. "Expecting value at column 12"."""
    joiner = " " if err.msg.endswith(" at") else " at "
    return f"{err.msg}{joiner}column {err.colno}"


def _json_object(path: Path, where: str, record: Any) -> dict:
    """`record` if it is a JSON object, else PromptFileError showing the expected shape."""
    if not isinstance(record, dict):
        raise PromptFileError(
            f'{path}, {where}: expected a JSON object like {{"prompt": "..."}}, got {type(record).__name__}. '
            f"Fix or remove it and import again; {NOTHING_IMPORTED}."
        )
    return record


def _csv_column(path: Path) -> tuple[str, list[Located]]:
    """The prompt column's header and its ("line n", cell) values; blank lines are skipped."""
    rows = _csv_rows(path, _read_text(path))
    if not rows:
        raise PromptFileError(f"{path} is empty. Add a header row such as 'prompt' and one prompt per row.")
    header_line, header = rows[0]
    field = prompt_field(header)
    if field is None:
        raise _missing_field(path, f"line {header_line}", "column", header)
    index = header.index(field)
    cells = [(f"line {line}", row[index] if index < len(row) else None) for line, row in rows[1:]]
    return field, cells


def _csv_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(first file line of the row, cells) for each CSV row, blank lines left out; a quoted cell may span lines."""
    reader = csv.reader(text.splitlines(keepends=True))
    rows = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return rows
        except csv.Error as err:
            raise PromptFileError(
                f"{path}, line {start}: not valid CSV ({err}). Fix that row and import again; {NOTHING_IMPORTED}."
            ) from err
        if row:
            rows.append((start, row))


def _parquet_column(path: Path) -> tuple[str, list[Located]]:
    """The prompt column's name and its ("row n", value) values, read with pyarrow."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        field = prompt_field(names)
        if field is None:
            raise _missing_field(path, "", "column", names)
        values = pq.read_table(path, columns=[field]).column(field).to_pylist()
    except PromptFileError:
        raise
    except Exception as err:
        raise PromptFileError(
            f"{path}: not a readable parquet file ({err}). Export it again as parquet, or use {FORMATS}."
        ) from err
    return field, [(f"row {n}", value) for n, value in enumerate(values, start=1)]


def _dataset_column(path: Path) -> tuple[str, list[Located]]:
    """The prompt column's name and its ("row n", value) values from a `save_to_disk` folder."""
    from datasets import DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as err:
        raise PromptFileError(
            f"{path} is a folder but not one written by datasets' save_to_disk ({err}). Point to that folder, "
            f"or import a file: {FORMATS}."
        ) from err
    if isinstance(dataset, DatasetDict):
        dataset = _single_split(path, dataset)
    field = prompt_field(dataset.column_names)
    if field is None:
        raise _missing_field(path, "", "column", dataset.column_names)
    return field, [(f"row {n}", value) for n, value in enumerate(dataset[field], start=1)]


def _single_split(path: Path, splits: Any) -> Any:
    """The "train" split of a DatasetDict, or its only split."""
    if "train" in splits:
        return splits["train"]
    if len(splits) == 1:
        return next(iter(splits.values()))
    raise PromptFileError(
        f"{path} holds the splits {', '.join(splits)} and none is 'train'. Save the split to import on its own "
        "(dataset_dict['name'].save_to_disk(...)) and import that folder."
    )
