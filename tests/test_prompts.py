"""Prompt import: every format, and every broken file named by file, line and field with nothing imported."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from labeling.prompts import PromptFileError, read_prompts, starter_prompts


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_starter_set_has_over_100_distinct_prompts():
    prompts = starter_prompts()
    assert len(prompts) >= 100 and len(set(prompts)) == len(prompts)
    assert all(p.strip() == p and p for p in prompts)


def test_jsonl_with_any_prompt_field_and_conversational_rows(tmp_path):
    rows = [
        {"prompt": " Explain tides. "},
        {"question": "Why is snow white?"},
        {"prompt": [{"role": "system", "content": "x"}, {"role": "user", "content": "Hi there"}]},
        {"text": "Explain tides."},
    ]
    path = write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_prompts(path) == ["Explain tides.", "Why is snow white?", "Hi there"]


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"prompt": "ok"}\n{"prompt": "broken\n')
    with pytest.raises(PromptFileError, match=r"p\.jsonl, line 2: not valid JSON.*nothing was imported"):
        read_prompts(path)


def test_missing_field_names_the_field_and_what_was_found(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"prompt": "ok"}\n{"query": "where"}\n')
    with pytest.raises(PromptFileError, match=r"line 2: no 'prompt' field.*found query"):
        read_prompts(path)


def test_empty_value_names_line_and_field(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"prompt": "ok"}\n{"prompt": "   "}\n')
    with pytest.raises(PromptFileError, match=r"line 2: field 'prompt' is empty"):
        read_prompts(path)


def test_csv_with_header(tmp_path):
    path = write(tmp_path / "p.csv", 'id,instruction\n1,"Write a haiku, please."\n2,Name a colour.\n')
    assert read_prompts(path) == ["Write a haiku, please.", "Name a colour."]


def test_csv_without_prompt_column_lists_columns(tmp_path):
    path = write(tmp_path / "p.csv", "id,body\n1,hello\n")
    with pytest.raises(PromptFileError, match=r"p\.csv, line 1: no 'prompt' column.*found id, body"):
        read_prompts(path)


def test_csv_empty_cell_names_its_line(tmp_path):
    path = write(tmp_path / "p.csv", 'prompt\nfirst\n""\nthird\n')
    with pytest.raises(PromptFileError, match=r"line 3: field 'prompt' is empty"):
        read_prompts(path)


def test_txt_one_prompt_per_line(tmp_path):
    assert read_prompts(write(tmp_path / "p.txt", "one\n\n  two  \n")) == ["one", "two"]


def test_parquet_and_its_null_rows(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"]}), good)
    assert read_prompts(good) == ["a", "b"]
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["a", None]}), bad)
    with pytest.raises(PromptFileError, match=r"bad\.parquet, row 2: field 'prompt'"):
        read_prompts(bad)


def test_datasets_folder_and_dataset_dict(tmp_path):
    Dataset.from_dict({"prompt": ["x", "y"]}).save_to_disk(str(tmp_path / "ds"))
    assert read_prompts(tmp_path / "ds") == ["x", "y"]
    DatasetDict({"train": Dataset.from_dict({"question": ["q"]})}).save_to_disk(str(tmp_path / "dd"))
    assert read_prompts(tmp_path / "dd") == ["q"]


@pytest.mark.parametrize(("name", "message"), [("missing.jsonl", "does not exist"), ("p.docx", "unknown file type")])
def test_unusable_paths_say_which_formats_work(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith(".docx"):
        path.write_bytes(b"PK")
    with pytest.raises(PromptFileError, match=f"{message}.*JSONL"):
        read_prompts(path)


def test_cli_import_is_all_or_nothing(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from storage import Store

    db = tmp_path / "loop.duckdb"
    bad = write(tmp_path / "bad.jsonl", '{"prompt": "fine"}\n{oops}\n')
    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-m", "labeling", "--db", str(db), "import-prompts", str(bad)],
        capture_output=True,
        text=True,
        cwd=repo,
    )
    assert run.returncode == 2 and "line 2: not valid JSON" in run.stderr
    good = write(tmp_path / "good.txt", "one\ntwo\n")
    run = subprocess.run(
        [sys.executable, "-m", "labeling", "--db", str(db), "import-prompts", str(good)],
        capture_output=True,
        text=True,
        cwd=repo,
        check=True,
    )
    assert "imported 2 new prompts" in run.stdout
    with Store(db) as store:
        assert [p.text for p in store.list_prompts()] == ["one", "two"]
