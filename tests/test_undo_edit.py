"""Undo, edit to chosen, truncation marks, counters and guidelines, on a real in-memory store."""

import pytest
from helpers import SETTINGS, vote, votes

from storage import Store, StoreError


def test_an_undone_vote_keeps_its_row_but_never_counts_trains_or_exports(store, tmp_path):
    kept, undone = votes(store, "left", "right")
    store.judgements.withdraw(undone, "ana")
    assert [j.id for j in store.judgements.list()] == [kept, undone], "the audit row stays"
    assert store.judgements.withdrawn() == [undone]
    assert store.judgements.count() == 1 and [p.judgement_id for p in store.training_data.preference_pairs()] == [kept]
    assert store.training_data.export_pairs(tmp_path / "pairs.jsonl") == 1


def test_an_undone_pair_can_be_judged_again(store):
    first = vote(store, "left")
    judgement = store.judgements.list()[0]
    store.judgements.withdraw(first, "ana")
    again = store.judgements.add(
        judgement.prompt_id, judgement.left_generation_id, judgement.right_generation_id, "right", "ana", "base"
    )
    assert again != first and [p.judgement_id for p in store.training_data.preference_pairs()] == [again]


def test_only_the_labeler_may_undo_and_only_once_and_not_after_training(store):
    first, second = votes(store, "left", "right")
    with pytest.raises(StoreError, match="is ana's; you can undo only your own votes"):
        store.judgements.withdraw(first, "bob")
    store.judgements.withdraw(first, "ana")
    with pytest.raises(StoreError, match="already undone"):
        store.judgements.withdraw(first, "ana")
    with pytest.raises(StoreError, match="No vote #99"):
        store.judgements.withdraw(99, "ana")
    round_id = store.rounds.start({}, parent_round=None, base_model="m")
    with pytest.raises(StoreError, match=f"in round {round_id}'s training data"):
        store.judgements.withdraw(second, "ana")  # a running round planned on it
    store.rounds.finish(round_id, "runs/round_001/adapter", {}, [second])
    with pytest.raises(StoreError, match="cannot be undone"):
        store.judgements.withdraw(second, "ana")
    assert store.judgements.count() == 1


def test_an_edit_becomes_a_pair_with_the_human_text_chosen_and_the_original_rejected(store, tmp_path):
    prompt_id = store.prompts.add("Name a fruit.")
    original = store.generations.add(prompt_id, "base", "Carrot", SETTINGS)
    judgement_id = store.judgements.add_edited_pair(prompt_id, original, "  Mango  ", "ana", "base")
    (pair,) = store.training_data.preference_pairs()
    assert (pair.chosen, pair.rejected, pair.judgement_id) == ("Mango", "Carrot", judgement_id)
    edited = store.generations.get(store.judgements.list()[0].left_generation_id)
    assert edited.author == "human" and store.generations.get(original).author == "model"
    assert store.training_data.export_pairs(tmp_path / "pairs.jsonl") == 1
    round_id = store.rounds.start({}, parent_round=None, base_model="m")
    store.rounds.finish(round_id, "runs/round_001/adapter", {}, [judgement_id])
    assert store.rounds.get(round_id).n_edited == 1, "the round's lineage shows the edited pair"


def test_an_empty_or_unchanged_edit_is_refused_and_stores_nothing(store):
    prompt_id = store.prompts.add("Name a fruit.")
    original = store.generations.add(prompt_id, "base", "Carrot", SETTINGS)
    with pytest.raises(StoreError, match="empty"):
        store.judgements.add_edited_pair(prompt_id, original, "   ", "ana", "base")
    with pytest.raises(StoreError, match="same as the original"):
        store.judgements.add_edited_pair(prompt_id, original, "Carrot ", "ana", "base")
    other = store.prompts.add("Another prompt.")
    with pytest.raises(StoreError, match="not a completion of prompt"):
        store.judgements.add_edited_pair(other, original, "Mango", "ana", "base")
    assert store.generations.count() == 1 and store.judgements.count() == 0


def test_a_completion_cut_by_the_token_limit_is_stored_as_such(store):
    prompt_id = store.prompts.add("Count to a million.")
    cut = store.generations.add(prompt_id, "base", "1, 2, 3", SETTINGS, cut_at=64)
    whole = store.generations.add(prompt_id, "base", "Done.", SETTINGS)
    assert store.generations.get(cut).cut_at == 64 and store.generations.get(whole).cut_at is None


def test_counters_count_today_mine_and_since_the_last_round(store):
    ids = votes(store, "left", "right", "tie")
    assert store.judgements.counters("ana") == {"today": 3, "mine": 3, "since_round": 3}
    assert store.judgements.counters("bob")["mine"] == 0
    round_id = store.rounds.start({}, parent_round=None, base_model="m")
    store.rounds.finish(round_id, "runs/round_001/adapter", {}, ids[:2])
    assert store.judgements.counters("ana")["since_round"] == 3, "not served yet: the next round would still use them"
    store.rounds.set_serving("round_001")
    assert store.judgements.counters("ana")["since_round"] == 1


def test_guidelines_keep_every_version_and_show_the_newest(tmp_path):
    with Store(tmp_path / "g.duckdb") as store:
        assert store.guidelines.latest() is None
        store.guidelines.set("Prefer short answers.", "ada")
        store.guidelines.set("Prefer short, correct answers.", "ada")
    with Store(tmp_path / "g.duckdb") as store:
        text, author, _ = store.guidelines.latest()
        assert (text, author) == ("Prefer short, correct answers.", "ada")
        assert [row[0] for row in store.guidelines.history()] == [1, 2]
