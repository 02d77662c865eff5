"""The DuckDB store: migrations, round trips, pair semantics, lineage, export, locking, durability."""

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from datasets import load_dataset, load_from_disk

from storage import PAIR_CHOICES, Store, StoreError


def seeded(store: Store, choices=("left", "right", "tie", "both_bad", "skip")) -> list[int]:
    """One prompt per choice, each with a pair 'good <i>' (left) vs 'bad <i>' (right) and a vote."""
    ids = []
    for i, choice in enumerate(choices):
        prompt = store.add_prompt(f"prompt {i}")
        left = store.add_generation(prompt, "base", f"good {i}", {"temperature": 0.8})
        right = store.add_generation(prompt, "base", f"bad {i}", {"temperature": 0.8})
        ids.append(store.add_judgement(prompt, left, right, choice, "ana", "base"))
    return ids


def test_round_trip_in_memory():
    store = Store()
    prompt = store.add_prompt("  Explain tides.  ")
    assert store.get_prompt(prompt).text == "Explain tides."
    assert store.add_prompt("Explain tides.") == prompt, "duplicates return the existing id"
    gen = store.add_generation(prompt, "base", "Tides come from the moon.", {"temperature": 0.7, "seed": 3})
    assert store.get_generation(gen).settings == {"temperature": 0.7, "seed": 3}
    assert store.count_prompts() == 1 and store.list_prompts()[0].source == "typed"


def test_tie_both_bad_and_skip_votes_are_not_training_pairs():
    store = Store()
    seeded(store)
    pairs = store.preference_pairs()
    assert PAIR_CHOICES == ("left", "right")
    assert [(p.chosen, p.rejected) for p in pairs] == [("good 0", "bad 0"), ("bad 1", "good 1")]
    assert store.count_judgements() == 5 and store.count_judgements("tie") == 1


def test_unused_pairs_exclude_done_rounds_but_not_failed_ones():
    store = Store()
    left_vote, right_vote = seeded(store, ("left", "right"))
    failed = store.start_round({"beta": 0.1}, None, "m")
    store.fail_round(failed, "boom")
    assert len(store.preference_pairs(unused_only=True)) == 2
    done = store.start_round({"beta": 0.1}, None, "m")
    store.finish_round(done, "runs/round_002/adapter", {"loss": 0.5}, [left_vote])
    assert [p.judgement_id for p in store.preference_pairs(unused_only=True)] == [right_vote]
    assert store.round_judgement_ids(done) == [left_vote]
    assert [p.judgement_id for p in store.preference_pairs(judgement_ids=[right_vote])] == [right_vote]


def test_round_lineage_and_serving_version():
    store = Store()
    (vote,) = seeded(store, ("left",))
    first = store.start_round({"beta": 0.1}, None, "base-model")
    store.finish_round(first, "runs/round_001/adapter", {"heldout_after": {"accuracy": 1.0}}, [vote])
    child = store.start_round({"beta": 0.2}, first, "base-model")
    round_ = store.get_round(first)
    assert round_.version == "round_001" and round_.status == "done" and round_.n_pairs == 1
    assert round_.metrics["heldout_after"]["accuracy"] == 1.0 and round_.config == {"beta": 0.1}
    assert store.get_round(child).parent_round == first
    assert store.get_serving() == "base"
    store.set_serving("round_001")
    assert store.get_serving() == "round_001"
    with pytest.raises(StoreError, match="not a finished round"):
        store.set_serving("round_002")
    with pytest.raises(StoreError, match="Unknown version"):
        store.set_serving("latest")
    assert store.mark_interrupted_rounds() == 1
    assert "interrupted" in store.get_round(child).error


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.add_prompt("   "), ValueError, "Prompt is empty"),
        (lambda s: s.add_prompts(["ok", " "], "file"), ValueError, "Prompt 2 is empty; nothing was imported"),
        (lambda s: s.get_prompt(99), StoreError, "No prompt with id 99"),
        (lambda s: s.export_pairs("x.jsonl"), StoreError, "No preference pairs to export yet"),
        (lambda s: s.get_round(5), StoreError, "No round 5"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(call, error, message):
    with pytest.raises(error, match=message):
        call(Store())


def test_bulk_import_is_all_or_nothing():
    store = Store()
    with pytest.raises(ValueError):
        store.add_prompts(["a", "b", ""], source="file")
    assert store.count_prompts() == 0
    assert store.add_prompts(["a", "b", "a"], source="file") == 2


def test_a_vote_must_name_two_completions_of_its_prompt():
    store = Store()
    seeded(store, ("left",))
    other = store.add_prompt("other")
    with pytest.raises(StoreError, match="not two completions of prompt"):
        store.add_judgement(other, 1, 2, "left", "ana", "base")
    with pytest.raises(ValueError, match="choice must be one of"):
        store.add_judgement(1, 1, 2, "meh", "ana", "base")


def test_concurrent_votes_from_many_threads_all_land():
    store = Store()
    prompt = store.add_prompt("p")
    a, b = (store.add_generation(prompt, "base", t, {}) for t in ("a", "b"))

    def vote(n):
        for _ in range(n):
            store.add_judgement(prompt, a, b, "left", threading.current_thread().name, "base")

    threads = [threading.Thread(target=vote, args=(25,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count_judgements() == 200


def test_migrations_apply_once_and_keep_data(tmp_path):
    path = tmp_path / "sub" / "loop.duckdb"
    with Store(path) as store:
        seeded(store, ("left",))
        assert store.applied_migrations() == ["001_initial"]
    with Store(path) as store:
        assert store.applied_migrations() == ["001_initial"]
        assert len(store.preference_pairs()) == 1


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_matches_trl_conversational_format(tmp_path, fmt):
    store = Store()
    seeded(store, ("left", "tie", "right"))
    target = tmp_path / {"jsonl": "pairs.jsonl", "parquet": "pairs.parquet", "hf": "pairs"}[fmt]
    assert store.export_pairs(target, fmt) == 2
    if fmt == "hf":
        dataset = load_from_disk(str(target))
    else:
        dataset = load_dataset({"jsonl": "json", "parquet": "parquet"}[fmt], data_files=str(target), split="train")
    assert set(dataset.column_names) == {"prompt", "chosen", "rejected", "judgement_id"}
    row = dataset[0]
    assert row["prompt"] == [{"role": "user", "content": "prompt 0"}]
    assert row["chosen"] == [{"role": "assistant", "content": "good 0"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad 0"}]
    trl = pytest.importorskip("trl")
    assert trl.data_utils.is_conversational(row)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file is left behind"


OPEN_AND_HOLD = textwrap.dedent(
    """
    import sys, time
    from storage import Store
    store = Store(sys.argv[1])
    prompt = store.add_prompt("durable?")
    a = store.add_generation(prompt, "base", "yes", {})
    b = store.add_generation(prompt, "base", "no", {})
    store.add_judgement(prompt, a, b, "left", "ana", "base")
    print("ok", flush=True)
    time.sleep(600)
    """
)


def test_locked_file_says_another_app_holds_it_and_votes_survive_a_kill(tmp_path):
    path = tmp_path / "loop.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", OPEN_AND_HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match="in use by another running prefloop app.*--db"):
            Store(path)
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with Store(path) as store:  # killed without closing: the acknowledged vote is on disk
        (judgement,) = store.list_judgements()
        assert judgement.choice == "left" and store.preference_pairs()[0].chosen == "yes"


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_text("hello")
    with pytest.raises(StoreError, match="not a DuckDB database.*--db"):
        Store(path)


def test_cli_exports_pairs(tmp_path):
    path = tmp_path / "loop.duckdb"
    with Store(path) as store:
        seeded(store, ("right",))
    out = tmp_path / "pairs.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "storage", "--db", str(path), "export", str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert "exported 1 pairs" in result.stdout
    assert json.loads(out.read_text())["chosen"][0]["content"] == "bad 0"


def test_both_bad_votes_become_two_undesirable_examples():
    store = Store()
    left_vote, both_bad_vote, tie_vote = seeded(store, ("left", "both_bad", "tie"))
    examples = store.unpaired_examples()
    assert [(e.judgement_id, e.completion, e.desirable) for e in examples] == [
        (both_bad_vote, "good 1", False),
        (both_bad_vote, "bad 1", False),
    ]
    done = store.start_round({}, None, "m")
    store.finish_round(done, "adapter", {}, [left_vote, both_bad_vote])
    assert store.unpaired_examples(unused_only=True) == []
