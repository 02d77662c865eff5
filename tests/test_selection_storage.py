"""How each judged pair was chosen, on a real DuckDB file: the 008_pair_selection migration, the column a vote
records, and the exports that carry it."""

from __future__ import annotations

import json

from helpers import SETTINGS, old_vote, vote

import storage.migrations
from storage import Store


def test_a_file_from_before_selection_migrates_its_pairs_as_random_and_its_edits_as_edit(tmp_path, monkeypatch):
    path = tmp_path / "loop.duckdb"
    shipped = list(storage.migrations.MIGRATIONS)
    before = [m for m in shipped if m[0] < "008_pair_selection"]
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", before)
    with Store(path) as store:
        sampled = old_vote(store, "Old prompt.", "old left", "old right")
        edit = old_vote(store, "Edited prompt.", "mine", "old right", author="human")
        assert "008_pair_selection" not in store.applied_migrations()
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", shipped)
    with Store(path) as store:
        assert store.applied_migrations()[len(before)] == "008_pair_selection"
        assert [(j.id, j.selection) for j in store.judgements.list()] == [(sampled, "random"), (edit, "edit")]
        assert [p.judgement_id for p in store.training_data.preference_pairs()] == [sampled, edit], "both still train"


def test_a_vote_records_how_its_pair_was_chosen(tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:
        prompt_id = store.prompts.add("Name a colour.")
        left = store.generations.add(prompt_id, "base", "Blue.", SETTINGS)
        right = store.generations.add(prompt_id, "base", "A deep, calm blue.", SETTINGS)
        spread = store.judgements.add(prompt_id, left, right, "left", "ana", "base", selection="spread")
        assert store.judgements.add(prompt_id, left, right, "left", "ana", "base", selection="spread") == spread
        plain = vote(store, "right", "Say hi.")
        edit = store.judgements.add_edited_pair(prompt_id, right, "Teal.", "ana", "base")
    with Store(tmp_path / "loop.duckdb") as store:
        selections = {j.id: j.selection for j in store.judgements.list()}
    assert selections == {spread: "spread", plain: "random", edit: "edit"}


def test_exports_and_a_rounds_rows_carry_how_each_pair_was_chosen(tmp_path):
    from storage.labels import items_from_rows, kto_rows, trl_rows

    with Store(tmp_path / "loop.duckdb") as store:
        prompt_id = store.prompts.add("Name a colour.")
        left = store.generations.add(prompt_id, "base", "Blue.", SETTINGS)
        right = store.generations.add(prompt_id, "base", "A deep, calm blue.", SETTINGS)
        store.judgements.add(prompt_id, left, right, "right", "ana", "base", selection="control")
        vote(store, "left", "Say hi.")
        store.training_data.export_pairs(tmp_path / "pairs.jsonl")
        store.training_data.export_unpaired(tmp_path / "kto.jsonl")
        pairs = store.training_data.preference_pairs()
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [(r["judgement_id"], r["selection"]) for r in rows] == [(1, "control"), (2, "random")]
    rows = [json.loads(line) for line in (tmp_path / "kto.jsonl").read_text().splitlines()]
    assert [r["selection"] for r in rows] == ["control", "control", "random", "random"]
    # a round's input file holds these rows and reads them back with the selection
    assert items_from_rows(trl_rows(pairs)) == pairs
    assert [e.selection for e in items_from_rows(kto_rows(pairs))] == ["control", "control", "random", "random"]
