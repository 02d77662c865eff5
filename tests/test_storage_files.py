"""The store on disk: named migrations, votes surviving a killed process, the file lock, pair export and the
export CLI. In-memory store behaviour is tests/test_storage.py.

    python -m pytest tests/test_storage_files.py -q
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from datasets import Dataset, load_dataset, load_from_disk
from helpers import SETTINGS, vote

import storage.migrations
from storage import Store, StoreError

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS_SHIPPED = list(storage.migrations.MIGRATIONS)


def migration_rows(path: Path) -> list[str]:
    con = duckdb.connect(str(path))
    try:
        return [name for (name,) in con.execute("SELECT name FROM migrations ORDER BY name").fetchall()]
    finally:
        con.close()


def start_store_process(path: Path, then: str) -> subprocess.Popen:
    """A python process that opens `path`, adds one 'left' vote, prints ok, then runs `then`."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from storage import Store
        store = Store(sys.argv[1])
        prompt = store.prompts.add("durable?")
        a = store.generations.add(prompt, "base", "yes", {{}})
        b = store.generations.add(prompt, "base", "no", {{}})
        store.judgements.add(prompt, a, b, "left", "ana", "base")
        print("ok", flush=True)
        {then}
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env
    )


def test_a_new_file_gets_its_folder_and_every_migration(tmp_path):
    path = tmp_path / "deep" / "er" / "loop.duckdb"
    with Store(path) as store:
        assert store.applied_migrations() == [name for name, _ in storage.migrations.MIGRATIONS]
        assert store.prompts.count() == 0 and store.rounds.get_serving() == "base"
    assert path.is_file()


def test_reopening_a_file_applies_only_missing_migrations_and_keeps_data(tmp_path, monkeypatch):
    path = tmp_path / "loop.duckdb"
    shipped = list(storage.migrations.MIGRATIONS)
    names = [name for name, _ in shipped]
    # A file made by a prefloop that knew only the first migration (before single ratings existed); its vote is
    # and its completions are written as that prefloop wrote them, since today's code fills columns and tables of
    # later migrations.
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", shipped[:1])
    with Store(path) as store:
        prompt = store.prompts.add("p")
        left, right = (
            store.db.write(
                lambda cur, text=text: cur.execute(
                    "INSERT INTO generations (prompt_id, version, text, settings, created_at) "
                    "VALUES (?, 'base', ?, '{}', now()) RETURNING id",
                    [prompt, text],
                ).fetchone()[0]
            )
            for text in "ab"
        )
        judgement = store.db.write(
            lambda cur: cur.execute(
                "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
                "policy_version, created_at) VALUES (?, ?, ?, 'left', 'ana', 'base', now()) RETURNING id",
                [prompt, left, right],
            ).fetchone()[0]
        )
        round_id = store.rounds.start({"beta": 0.1}, None, "m")
        store.rounds.finish(round_id, "adapter", {"loss": 0.3}, [judgement])
        store.rounds.set_serving("round_001")
    assert migration_rows(path) == ["001_initial"]
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", shipped)
    with Store(path) as store:
        assert store.applied_migrations() == names
        assert store.rounds.get(round_id).n_ratings == 0 and store.ratings.count() == 0
        store.ratings.add(store.generations.get(1).id, "up", "ana", "base")
    extra = ("999_labeler_notes", "CREATE TABLE labeler_notes (judgement_id BIGINT, note VARCHAR)")
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", [*shipped, extra])
    for _ in range(2):
        with Store(path) as store:
            assert store.applied_migrations() == [*names, "999_labeler_notes"]
            assert store.training_data.preference_pairs()[0].chosen == "a" and store.rounds.get_serving() == "round_001"
            assert store.rounds.judgement_ids(round_id) == [judgement] and store.ratings.count("up") == 1
    assert migration_rows(path) == [*names, "999_labeler_notes"]


def test_a_failing_migration_is_rolled_back_and_not_recorded(tmp_path, monkeypatch):
    path = tmp_path / "loop.duckdb"
    Store(path).close()
    broken = ("002_broken", "CREATE TABLE half_done (x INT); SELECT * FROM no_such_table")
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", [*storage.migrations.MIGRATIONS, broken])
    with pytest.raises(StoreError, match=r"(?s)migration 002_broken failed .* rolled back"):
        Store(path)
    con = duckdb.connect(str(path))
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'half_done'").fetchone() == (0,)
    con.close()
    assert migration_rows(path) == sorted(name for name, _ in MIGRATIONS_SHIPPED)


def test_a_file_upgraded_by_a_newer_prefloop_is_refused(tmp_path):
    path = tmp_path / "loop.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO migrations VALUES ('999_from_the_future', now())")
    con.close()
    with pytest.raises(StoreError, match="newer prefloop .*999_from_the_future.*Update prefloop"):
        Store(path)


@pytest.mark.parametrize("ending", ["killed", "exited"])
def test_an_acknowledged_vote_survives_the_process_dying(tmp_path, ending):
    path = tmp_path / "loop.duckdb"
    then = "time.sleep(60)" if ending == "killed" else "os._exit(0)"
    process = start_store_process(path, then)
    try:
        assert process.stdout.readline().strip() == "ok"
        if ending == "killed":
            process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stdout.close()
    with Store(path) as store:
        (judgement,) = store.judgements.list()
        assert judgement.choice == "left"
        pairs = store.training_data.preference_pairs()
        assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("durable?", "yes", "no")]


def test_a_file_held_by_another_app_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "loop.duckdb"
    holder = start_store_process(path, "time.sleep(60)")
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match=r"in use by another running prefloop app.*--db pointing at another file"):
            Store(path)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    with Store(path) as store:
        assert store.judgements.count() == 1


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("my notes, not a database")
    with pytest.raises(StoreError, match=r"is not a DuckDB database\. Start the app with --db"):
        Store(path)
    assert path.read_text() == "my notes, not a database"


def test_a_damaged_file_is_refused_at_start_up_and_left_as_it_was(tmp_path):
    path = tmp_path / "loop.duckdb"
    with Store(path) as store:
        store.prompts.add_many([f"prompt {i}: " + "words " * 40 for i in range(20_000)], source="big.jsonl")
    with path.open("r+b") as f:  # cut short, as a full disk or a copy that stopped half-way leaves it
        f.truncate(path.stat().st_size // 10)
    damaged = path.read_bytes()
    with pytest.raises(StoreError, match=r"is damaged and cannot be read .* nothing was written to it\. Restore"):
        Store(path)
    started = subprocess.run(
        [sys.executable, "app.py", "--db", str(path), "--runs", str(tmp_path / "runs"), "--no-browser"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert started.returncode != 0
    assert "is damaged and cannot be read" in started.stderr and "Traceback" not in started.stderr, started.stderr
    assert path.read_bytes() == damaged and sorted(p.name for p in tmp_path.iterdir()) == ["loop.duckdb"]


def test_a_full_disk_says_so_saves_nothing_half_and_the_store_works_once_there_is_room(tmp_path):
    """A file size limit stands in for a full disk: DuckDB's write fails the same way, at commit."""
    path = tmp_path / "loop.duckdb"
    then = textwrap.dedent(
        """
        import resource, signal
        gens = [store.generations.add(prompt, "base", t, {}) for t in ("maybe", "never")]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = os.path.getsize(sys.argv[1]) + 4096
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        for attempt in (lambda: store.prompts.add_many(["x" * 500 + str(i) for i in range(20000)], source="big"),
                        lambda: store.judgements.add(prompt, gens[0], gens[1], "right", "bob", "base")):
            try:
                attempt()
            except Exception as err:
                print(type(err).__name__, err, flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        store.judgements.add(prompt, gens[0], gens[1], "right", "bob", "base")  # room again: the vote saves
        print("saved", flush=True)
        """
    )
    proc = start_store_process(path, then.replace("\n", "\n        "))
    out, _ = proc.communicate(timeout=300)
    lines = out.splitlines()
    assert lines[0] == "ok" and lines[-1] == "saved", out
    for line in lines[1:3]:
        assert line.startswith(f"StoreError Could not save to {path}: the disk is full or the file cannot grow"), out
        assert line.endswith("Nothing was saved: free some disk space, then try again."), out
    with Store(path) as store:
        assert store.prompts.count() == 1, "the failed import left no prompt behind"
        assert [j.labeler for j in store.judgements.list()] == ["ana", "bob"]


def read_back(path: Path, fmt: str) -> Dataset:
    if fmt == "hf":
        return load_from_disk(str(path))
    return load_dataset({"jsonl": "json", "parquet": "parquet"}[fmt], data_files=str(path), split="train")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_matches_trls_conversational_preference_format(store_with_votes, tmp_path, fmt):
    target = tmp_path / "exports" / {"jsonl": "pairs.jsonl", "parquet": "pairs.parquet", "hf": "pairs"}[fmt]
    assert store_with_votes.training_data.export_pairs(target, fmt) == 2
    dataset = read_back(target, fmt)
    assert sorted(dataset.column_names) == ["chosen", "judgement_id", "prompt", "rejected", "selection"]
    assert dataset["judgement_id"] == [1, 3]
    assert dataset[0] == {
        "prompt": [{"role": "user", "content": "Name a fruit."}],
        "chosen": [{"role": "assistant", "content": "Mango 🥭"}],
        "rejected": [{"role": "assistant", "content": "Carrot"}],
        "judgement_id": 1,
        "selection": "random",
    }
    assert (dataset[1]["chosen"][0]["content"], dataset[1]["rejected"][0]["content"]) == ("4", "5")
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name], "no temporary files are left"
    try:
        from trl.data_utils import is_conversational
    except ImportError:
        return
    assert all(is_conversational(row) for row in dataset)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_unpaired_export_is_what_a_kto_round_trains_on_in_trls_format(store_with_votes, tmp_path, fmt):
    prompt = store_with_votes.prompts.add("Rate me.")
    fine = store_with_votes.generations.add(prompt, "base", "Fine.", SETTINGS)
    rating = store_with_votes.ratings.add(fine, "up", "ana", "base")
    target = tmp_path / {"jsonl": "kto.jsonl", "parquet": "kto.parquet", "hf": "kto"}[fmt]
    # two pairs (a 👍 and a 👎 each), one both-bad vote (two 👎), one rating
    assert store_with_votes.training_data.export_unpaired(target, fmt) == 7
    dataset = read_back(target, fmt)
    assert sorted(dataset.column_names) == ["completion", "judgement_id", "label", "prompt", "rating_id", "selection"]
    rows = [(r["prompt"][0]["content"], r["completion"][0]["content"], r["label"]) for r in dataset]
    assert rows == [
        ("Name a fruit.", "Mango 🥭", True),
        ("Name a fruit.", "Carrot", False),
        ("2+2?", "4", True),
        ("2+2?", "5", False),
        ("Capital of France?", "Rome", False),
        ("Capital of France?", "Berlin", False),
        ("Rate me.", "Fine.", True),
    ]
    assert dataset["judgement_id"] == [1, 1, 3, 3, 4, 4, None] and dataset["rating_id"] == [None] * 6 + [rating]
    assert dataset["selection"] == ["random"] * 6 + [None]
    trl_data_utils = pytest.importorskip("trl.data_utils")
    assert all(trl_data_utils.is_conversational(row) for row in dataset)
    # The pairs' rows are exactly TRL's own unpairing of the pair export.
    store_with_votes.training_data.export_pairs(tmp_path / "pairs.jsonl")
    unpaired = trl_data_utils.unpair_preference_dataset(read_back(tmp_path / "pairs.jsonl", "jsonl"))
    theirs = sorted((r["prompt"][0]["content"], r["completion"][0]["content"], r["label"]) for r in unpaired)
    assert theirs == sorted(rows[:4])


def test_jsonl_export_keeps_non_ascii_text_readable(store_with_votes, tmp_path):
    target = tmp_path / "pairs.jsonl"
    store_with_votes.training_data.export_pairs(target)
    assert "Mango 🥭" in target.read_text(encoding="utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "hf"])
def test_exporting_again_replaces_the_older_export(store_with_votes, tmp_path, fmt):
    target = tmp_path / ("pairs.jsonl" if fmt == "jsonl" else "pairs")
    store_with_votes.training_data.export_pairs(target, fmt)
    vote(store_with_votes, "left", "One more?", "yes", "no")
    assert store_with_votes.training_data.export_pairs(target, fmt) == 3
    assert len(read_back(target, fmt)) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary files are left"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_a_failed_export_leaves_no_half_file_and_keeps_the_older_one(store_with_votes, tmp_path, monkeypatch, fmt):
    target = tmp_path / "out" / f"pairs.{fmt}"
    target.parent.mkdir()
    target.write_text("older export")
    writer = {"jsonl": "to_json", "parquet": "to_parquet", "hf": "save_to_disk"}[fmt]

    def write_half_then_fail(self, path, *args, **kwargs):
        Path(path).write_text('{"prompt": [{"role": "us')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Dataset, writer, write_half_then_fail)
    with pytest.raises(StoreError, match="Could not write .*No space left on device.*Nothing was changed there"):
        store_with_votes.training_data.export_pairs(target, fmt)
    assert target.read_text() == "older export"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_exporting_into_an_unwritable_place_says_to_pick_another(store_with_votes, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="Pick another folder"):
        store_with_votes.training_data.export_pairs(blocker / "pairs.jsonl")


def test_cli_exports_pairs(tmp_path):
    path = tmp_path / "loop.duckdb"
    with Store(path) as store:
        vote(store, "right")
    out = tmp_path / "pairs.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "storage", "--db", str(path), "export", str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "exported 1 pairs" in result.stdout
    assert json.loads(out.read_text())["chosen"][0]["content"] == "right 0"
    unpaired = tmp_path / "kto.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "storage", "--db", str(path), "export", str(unpaired), "--kind", "unpaired"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "exported 2 unpaired rows" in result.stdout
    rows = [json.loads(line) for line in unpaired.read_text().splitlines()]
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [("right 0", True), ("left 0", False)]
