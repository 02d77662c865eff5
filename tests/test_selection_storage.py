"""How each judged pair was chosen, on a real DuckDB file: the 008_pair_selection migration, the column a vote
records, and the exports that carry it."""

from __future__ import annotations

from datetime import datetime

from helpers import SETTINGS, vote

import storage.migrations
from storage import Store
from storage.generations import insert_generation


def old_vote(store: Store, prompt_id: int, left_id: int, right_id: int) -> int:
    """A left vote inserted as prefloop wrote it before judgements had a selection column."""

    def insert(cur) -> int:
        judgement_id = cur.execute(
            "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
            "policy_version, created_at) VALUES (?, ?, ?, 'left', 'ana', 'base', ?) RETURNING id",
            [prompt_id, left_id, right_id, datetime.now()],
        ).fetchone()[0]
        cur.execute("INSERT INTO judged_pairs VALUES (?, ?, ?)", [*sorted([left_id, right_id]), judgement_id])
        return judgement_id

    return store.db.write(insert)


def test_a_file_from_before_selection_migrates_its_pairs_as_random_and_its_edits_as_edit(tmp_path, monkeypatch):
    path = tmp_path / "loop.duckdb"
    shipped = list(storage.migrations.MIGRATIONS)
    before = [m for m in shipped if m[0] < "008_pair_selection"]
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", before)
    with Store(path) as store:
        prompt_id = store.prompts.add("Old prompt.")
        left = store.generations.add(prompt_id, "base", "old left", SETTINGS)
        right = store.generations.add(prompt_id, "base", "old right", SETTINGS)
        edited = store.db.write(lambda cur: insert_generation(cur, prompt_id, "base", "mine", {}, "human", None))
        sampled = old_vote(store, prompt_id, left, right)
        edit = old_vote(store, prompt_id, edited, right)
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
