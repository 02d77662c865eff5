"""Storage behaviour beyond tests/test_storage*.py: vote integrity, both-bad as KTO examples, the export CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage import Store, StoreError


def seeded(store: Store, choices=("left", "right", "tie", "both_bad", "skip")) -> list[int]:
    """One prompt per choice, each with a pair 'good <i>' (left) vs 'bad <i>' (right) and a vote."""
    ids = []
    for i, choice in enumerate(choices):
        prompt = store.add_prompt(f"prompt {i}")
        left = store.add_generation(prompt, "base", f"good {i}", {"temperature": 0.8})
        right = store.add_generation(prompt, "base", f"bad {i}", {"temperature": 0.8})
        ids.append(store.add_judgement(prompt, left, right, choice, "ana", "base"))
    return ids


def test_a_vote_must_name_two_completions_of_its_prompt():
    store = Store()
    seeded(store, ("left",))
    other = store.add_prompt("other")
    with pytest.raises(StoreError, match="not two completions of prompt"):
        store.add_judgement(other, 1, 2, "left", "ana", "base")
    with pytest.raises(ValueError, match="choice must be one of"):
        store.add_judgement(1, 1, 2, "meh", "ana", "base")


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
    unpaired = tmp_path / "kto.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "storage", "--db", str(path), "export", str(unpaired), "--kind", "unpaired"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert "exported 2 unpaired rows" in result.stdout
    rows = [json.loads(line) for line in unpaired.read_text().splitlines()]
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [("bad 0", True), ("good 0", False)]


def test_both_bad_votes_become_two_undesirable_examples():
    store = Store()
    left_vote, both_bad_vote, tie_vote = seeded(store, ("left", "both_bad", "tie"))
    examples = store.unpaired_examples()
    assert [(e.judgement_id, e.completion, e.desirable) for e in examples] == [
        (both_bad_vote, "good 1", False),
        (both_bad_vote, "bad 1", False),
    ]
    done = store.rounds.start({}, None, "m")
    store.rounds.finish(done, "adapter", {}, [left_vote, both_bad_vote])
    assert store.unpaired_examples(unused_only=True) == []
