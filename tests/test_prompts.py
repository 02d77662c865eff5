"""Prompt import: every format, and every broken file named by file, line and field with nothing imported."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from labeling.prompts import PROMPT_FIELDS, STARTER_FILE, PromptFileError, read_prompts, starter_prompts

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# -- starter set ---------------------------------------------------------------------------------------


def test_starter_set_has_over_100_unique_non_empty_prompts():
    prompts = starter_prompts()
    assert len(prompts) >= 100
    assert len(set(prompts)) == len(prompts)
    assert all(p and p == p.strip() for p in prompts)


def test_starter_file_has_no_duplicates_and_every_line_has_a_category():
    rows = [json.loads(line) for line in STARTER_FILE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 120
    assert len({r["prompt"].strip().lower() for r in rows}) == len(rows)
    assert all(isinstance(r["category"], str) and r["category"] for r in rows)
    assert len({r["category"] for r in rows}) >= 10


# -- JSONL / JSON --------------------------------------------------------------------------------------


def test_jsonl_accepts_every_prompt_field_strips_and_dedupes(tmp_path):
    rows = [{"prompt": " Explain tides. "}, {"question": "Why is snow white?"}, {"text": "Explain tides."}]
    rows += [{"instruction": "Name a colour."}, {"Prompt": "Capitalised header."}]
    path = write(tmp_path / "p.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n   \n")
    assert read_prompts(path) == ["Explain tides.", "Why is snow white?", "Name a colour.", "Capitalised header."]


def test_first_prompt_field_in_order_wins(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"text": "from text", "prompt": "from prompt"}])
    assert read_prompts(str(path)) == ["from prompt"]


def test_conversational_prompt_gives_last_user_message(tmp_path):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "An answer"},
        {"role": "user", "content": " Follow-up question "},
    ]
    parts = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "text", "text": "rain."}]}]
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": conversation}, {"prompt": parts}])
    assert read_prompts(path) == ["Follow-up question", "Describe\nrain."]


def test_conversation_without_user_message_names_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"prompt": [{"role": "system", "content": "x"}]}])
    with pytest.raises(PromptFileError, match=r"p\.jsonl, line 2: field 'prompt' .*no message with role 'user'"):
        read_prompts(path)


def test_json_file_may_hold_one_array(tmp_path):
    path = write(tmp_path / "p.json", json.dumps([{"prompt": "a"}, {"question": "b"}], indent=2))
    assert read_prompts(path) == ["a", "b"]


def test_json_array_item_without_field_names_the_item(tmp_path):
    path = write(tmp_path / "p.json", json.dumps([{"prompt": "a"}, {"body": "b"}]))
    with pytest.raises(PromptFileError, match=r"p\.json, item 2: no 'prompt' field"):
        read_prompts(path)


def test_broken_jsonl_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"prompt": "ok"}\n\n{"prompt": "broken\n{"prompt": "fine"}\n')
    problem = r"not valid JSON \(Unterminated string starting at column 12\)"
    with pytest.raises(PromptFileError, match=rf"p\.jsonl, line 3: {problem}\. Fix or remove.*nothing was imported"):
        read_prompts(path)


def test_jsonl_line_that_is_not_an_object_names_the_line(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"prompt": "ok"}\n"just a string"\n')
    with pytest.raises(PromptFileError, match=r"p\.jsonl, line 2: expected a JSON object like"):
        read_prompts(path)


def test_missing_jsonl_field_names_line_expected_fields_and_what_was_found(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"query": "where", "id": 3}])
    expected = rf"no 'prompt' field \(expected one of {', '.join(PROMPT_FIELDS)}\)\. Found fields: query, id"
    with pytest.raises(PromptFileError, match=rf"p\.jsonl, line 2: {expected}"):
        read_prompts(path)


@pytest.mark.parametrize("value", ["", "   \t", None])
def test_empty_jsonl_value_names_line_and_field(tmp_path, value):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "ok"}, {"question": value}])
    with pytest.raises(PromptFileError, match=r"p\.jsonl, line 2: field 'question' is empty.*nothing was imported"):
        read_prompts(path)


def test_non_text_jsonl_value_names_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": 42}])
    with pytest.raises(PromptFileError, match=r"p\.jsonl, line 1: field 'prompt' holds int 42, not text"):
        read_prompts(path)


def test_file_that_is_not_utf8_says_to_save_as_utf8(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(PromptFileError, match=r"p\.jsonl: not UTF-8 text.*Save it as UTF-8"):
        read_prompts(path)


# -- CSV -----------------------------------------------------------------------------------------------


def test_csv_reads_the_prompt_column_with_quotes_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "p.csv"
    text = 'id,instruction\n1,"Write a haiku, please."\n2,"Say ""hi"""\n\n3,  Name a colour.  \n4,Name a colour.\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_prompts(path) == ["Write a haiku, please.", 'Say "hi"', "Name a colour."]


def test_csv_without_prompt_column_names_the_columns_found(tmp_path):
    path = write(tmp_path / "p.csv", "id,body\n1,hello\n")
    with pytest.raises(
        PromptFileError, match=r"p\.csv, line 1: no 'prompt' column \(expected .*\)\. Found columns: id, body"
    ):
        read_prompts(path)


def test_csv_empty_cell_names_its_file_line(tmp_path):
    path = write(tmp_path / "p.csv", 'id,prompt\n1,"first\nspans two lines"\n\n2,""\n3,third\n')
    with pytest.raises(PromptFileError, match=r"p\.csv, line 5: field 'prompt' is empty"):
        read_prompts(path)


@pytest.mark.parametrize("row", ['""', " "])
def test_single_column_csv_empty_cell_names_its_line(tmp_path, row):
    path = write(tmp_path / "p.csv", f"prompt\nfirst\n{row}\nthird\n")
    with pytest.raises(PromptFileError, match=r"p\.csv, line 3: field 'prompt' is empty.*remove that line"):
        read_prompts(path)


def test_csv_short_row_is_an_empty_cell(tmp_path):
    path = write(tmp_path / "p.csv", "id,prompt\n1,ok\n2\n")
    with pytest.raises(PromptFileError, match=r"p\.csv, line 3: field 'prompt' is empty"):
        read_prompts(path)


def test_empty_csv_asks_for_a_header(tmp_path):
    with pytest.raises(PromptFileError, match=r"p\.csv is empty\. Add a header row"):
        read_prompts(write(tmp_path / "p.csv", "\n"))


def test_csv_with_only_a_header_holds_no_prompts(tmp_path):
    with pytest.raises(PromptFileError, match=r"p\.csv holds no prompts; nothing was imported"):
        read_prompts(write(tmp_path / "p.csv", "prompt\n"))


# -- TXT -----------------------------------------------------------------------------------------------


def test_txt_one_prompt_per_non_blank_line(tmp_path):
    path = write(tmp_path / "p.TXT", "one\n\n  two  \r\n\t\none\nthree")
    assert read_prompts(path) == ["one", "two", "three"]


def test_blank_txt_holds_no_prompts(tmp_path):
    with pytest.raises(PromptFileError, match=r"p\.txt holds no prompts"):
        read_prompts(write(tmp_path / "p.txt", "\n  \n"))


# -- parquet -------------------------------------------------------------------------------------------


def test_parquet_reads_the_prompt_column(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "text": [" a ", "b", "a"]}), path)
    assert read_prompts(path) == ["a", "b"]


def test_parquet_conversational_prompts(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "Hello?"}]]}), path)
    assert read_prompts(path) == ["Hello?"]


@pytest.mark.parametrize("value", [None, " "])
def test_parquet_null_or_empty_value_names_the_row(tmp_path, value):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"prompt": ["a", value]}, schema=pa.schema([("prompt", pa.string())])), path)
    with pytest.raises(PromptFileError, match=r"bad\.parquet, row 2: field 'prompt' is empty"):
        read_prompts(path)


def test_parquet_without_prompt_column_names_the_columns_found(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"body": ["a"], "id": [1]}), path)
    with pytest.raises(PromptFileError, match=r"p\.parquet: no 'prompt' column .*Found columns: body, id"):
        read_prompts(path)


def test_unreadable_parquet_says_so(tmp_path):
    path = tmp_path / "p.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(PromptFileError, match=r"p\.parquet: not a readable parquet file"):
        read_prompts(path)


# -- datasets folders ----------------------------------------------------------------------------------


def test_datasets_folder(tmp_path):
    Dataset.from_dict({"prompt": ["x", " y ", "x"], "n": [1, 2, 3]}).save_to_disk(str(tmp_path / "ds"))
    assert read_prompts(tmp_path / "ds") == ["x", "y"]


def test_dataset_dict_uses_train_split_or_the_only_split(tmp_path):
    splits = {"train": Dataset.from_dict({"question": ["q"]}), "test": Dataset.from_dict({"question": ["t"]})}
    DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    assert read_prompts(tmp_path / "dd") == ["q"]
    DatasetDict({"eval": Dataset.from_dict({"text": ["only"]})}).save_to_disk(str(tmp_path / "one"))
    assert read_prompts(tmp_path / "one") == ["only"]


def test_dataset_dict_without_train_among_several_splits_names_them(tmp_path):
    splits = {"a": Dataset.from_dict({"prompt": ["1"]}), "b": Dataset.from_dict({"prompt": ["2"]})}
    DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(PromptFileError, match=r"dd holds the splits a, b and none is 'train'"):
        read_prompts(tmp_path / "dd")


def test_datasets_folder_conversational_prompts(tmp_path):
    rows = {"prompt": [[{"role": "system", "content": "s"}, {"role": "user", "content": "Why?"}]]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    assert read_prompts(tmp_path / "ds") == ["Why?"]


def test_datasets_folder_empty_value_names_the_row(tmp_path):
    Dataset.from_dict({"instruction": ["ok", "", "ok too"]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(PromptFileError, match=r"ds, row 2: field 'instruction' is empty"):
        read_prompts(tmp_path / "ds")


def test_datasets_folder_without_prompt_column_names_the_columns_found(tmp_path):
    Dataset.from_dict({"body": ["a"]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(PromptFileError, match=r"ds: no 'prompt' column .*Found columns: body"):
        read_prompts(tmp_path / "ds")


def test_plain_folder_is_not_a_datasets_folder(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(PromptFileError, match=r"plain is a folder but not one written by datasets' save_to_disk"):
        read_prompts(tmp_path / "plain")


# -- unusable paths and all-or-nothing -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [("missing.jsonl", "does not exist"), ("p.docx", "unknown file type")])
def test_unusable_paths_say_which_formats_work(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith(".docx"):
        path.write_bytes(b"PK")
    with pytest.raises(PromptFileError, match=rf"{message}.*JSONL.*CSV.*TXT.*parquet.*datasets folder"):
        read_prompts(path)


def test_prompt_file_error_is_a_value_error():
    assert issubclass(PromptFileError, ValueError)


def test_cli_import_is_all_or_nothing(tmp_path):
    from storage import Store

    db = tmp_path / "loop.duckdb"
    bad = write(tmp_path / "bad.jsonl", '{"prompt": "fine"}\n{oops}\n')
    command = [sys.executable, "-m", "labeling", "--db", str(db), "import-prompts"]
    run = subprocess.run([*command, str(bad)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and "line 2: not valid JSON" in run.stderr
    good = write(tmp_path / "good.txt", "one\ntwo\n")
    run = subprocess.run([*command, str(good)], capture_output=True, text=True, cwd=REPO, check=True)
    assert "imported 2 new prompts" in run.stdout
    with Store(db) as store:
        assert [p.text for p in store.prompts.list()] == ["one", "two"]


def test_deeply_nested_json_names_the_file_and_line(tmp_path):
    from labeling.prompts import PromptFileError, read_prompts

    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"prompt": "fine"}\n' + '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(PromptFileError, match=r"deep\.jsonl, line 2: JSON nested too deeply.*nothing was imported"):
        read_prompts(deep)
    array = tmp_path / "deep.json"
    array.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PromptFileError, match=r"deep\.json, its JSON array: JSON nested too deeply"):
        read_prompts(array)


def test_the_clis_take_db_after_the_subcommand_too(tmp_path):
    from labeling.__main__ import main as labeling_main
    from storage import Store
    from storage.__main__ import main as storage_main

    db = str(tmp_path / "after.duckdb")
    assert labeling_main(["add-prompt", "Say hi.", "--db", db]) == 0
    assert labeling_main(["--db", db, "add-prompt", "Say bye."]) == 0
    with Store(db) as store:
        assert [p.text for p in store.prompts.list()] == ["Say hi.", "Say bye."]
    assert storage_main(["export", str(tmp_path / "out.jsonl"), "--db", db]) == 2  # the same file: nothing to export
