"""Arena storage on a real DuckDB file: the 005_arena migration, battles voted once, held-out prompts that labeling
and training never use.

    python -m pytest tests/test_arena_storage.py -q
"""

from __future__ import annotations

import threading

import pytest
from helpers import SETTINGS, old_vote, vote

import storage.migrations
from storage import Store, StoreError, winner_of
from storage.models import VotedBattle


def battle(store: Store, prompt: str = "Explain tides.", left: str = "round_001", labeler: str = "ana") -> int:
    """A battle base vs round_001 on `prompt` (added if new), `left` shown on the left, handed to `labeler`."""
    prompt_id = store.prompts.add(prompt)
    a = store.generations.add(prompt_id, "base", f"base on {prompt}", SETTINGS)
    b = store.generations.add(prompt_id, "round_001", f"round_001 on {prompt}", SETTINGS)
    return store.battles.add(prompt_id, "base", "round_001", a, b, left, labeler)


def train_on(store: Store, judgement_ids: list[int]) -> None:
    """A finished round that trained on these judgements."""
    round_id = store.rounds.start({}, None, "tiny")
    store.rounds.finish(round_id, "runs/round_001/adapter", {}, judgement_ids)


def test_the_arena_migration_upgrades_a_file_from_before_it_and_keeps_its_data(tmp_path, monkeypatch):
    path = tmp_path / "loop.duckdb"
    shipped = list(storage.migrations.MIGRATIONS)
    before = [m for m in shipped if m[0] < "005_arena"]  # later migrations build on its tables
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", before)
    with Store(path) as store:
        judged = old_vote(store, "Old prompt.", "old left", "old right")
        store.prompts.add("Never labeled.")
        assert "005_arena" not in store.applied_migrations()
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", shipped)
    with Store(path) as store:
        assert store.applied_migrations()[len(before)] == "005_arena"
        assert [p.text for p in store.prompts.for_arena(10)] != []
        assert store.prompts.count_eval_only() == 0 and store.prompts.count_held_out() == (0, 2)
        assert [p.judgement_id for p in store.training_data.preference_pairs()] == [judged], "old labels still train"
        assert sorted(p.text for p in store.prompts.for_labeling(10)) == ["Never labeled.", "Old prompt."]
        battle_id = battle(store)
        assert store.battles.vote(battle_id, "left", "ana").winner == "b"


def test_a_vote_is_stored_once_and_only_by_the_labeler_the_battle_was_handed_to(tmp_path):
    path = tmp_path / "loop.duckdb"
    with Store(path) as store:
        battle_id = battle(store, left="round_001", labeler="ana")
        assert store.battles.get(battle_id).winner is None
        with pytest.raises(StoreError, match="handed to ana, so only they can vote"):
            store.battles.vote(battle_id, "right", "bob")
        voted = store.battles.vote(battle_id, "left", "ana")
        assert (voted.winner, voted.left_version, voted.right_version) == ("b", "round_001", "base")
        assert store.battles.vote(battle_id, "left", "ana") == voted, "a double press stores nothing new"
        with pytest.raises(StoreError, match=r"already has a vote \(round_001 won\); each battle is voted once"):
            store.battles.vote(battle_id, "tie", "ana")
        with pytest.raises(ValueError, match="side must be one of left, right, tie, both_bad"):
            store.battles.vote(battle_id, "a", "ana")
    with Store(path) as store:  # on disk
        (stored,) = store.battles.list()
        assert (stored.winner, stored.labeler) == ("b", "ana") and stored.voted_at is not None
        assert store.battles.voted() == [VotedBattle("base", "round_001", "b")]


def test_votes_racing_on_one_battle_store_one(store):
    battle_id = battle(store)
    results = []

    def press(side: str) -> None:
        try:
            results.append(store.battles.vote(battle_id, side, "ana").winner)
        except StoreError as err:
            results.append(err)

    threads = [threading.Thread(target=press, args=(side,)) for side in ("left", "left", "right", "tie") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = {r for r in results if isinstance(r, str)}
    assert len(winners) == 1 and store.battles.count_voted() == 1
    assert store.battles.get(battle_id).winner in winners


def test_the_side_shown_maps_to_the_winner_in_one_place():
    assert winner_of("left", left_version="base", version_a="base") == "a"
    assert winner_of("left", left_version="round_001", version_a="base") == "b"
    assert winner_of("right", left_version="round_001", version_a="base") == "a"
    assert winner_of("right", left_version="base", version_a="base") == "b"
    assert winner_of("tie", "base", "base") == "tie" and winner_of("both_bad", "base", "base") == "both_bad"


def test_a_battle_must_name_its_versions_completions(store):
    prompt_id = store.prompts.add("p")
    a = store.generations.add(prompt_id, "base", "x", SETTINGS)
    b = store.generations.add(prompt_id, "base", "y", SETTINGS)
    with pytest.raises(StoreError, match="is not round_001's completion"):
        store.battles.add(prompt_id, "base", "round_001", a, b, "base", "ana")
    with pytest.raises(StoreError, match="two different versions"):
        store.battles.add(prompt_id, "base", "base", a, b, "base", "ana")


def test_eval_only_prompts_are_never_sampled_for_labeling(tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:
        store.prompts.add_many([f"labeling {i}" for i in range(5)], source="test")
        store.prompts.add_many([f"held out {i}" for i in range(5)], source="eval", eval_only=True)
        # existing ones keep theirs
        store.prompts.add_many(["labeling 0", "held out 0"], source="again", eval_only=True)
        assert store.prompts.count_eval_only() == 5 and store.prompts.count_unjudged() == 5
        for _ in range(10):
            assert sorted(p.text for p in store.prompts.for_labeling(20)) == [f"labeling {i}" for i in range(5)]
        typed = store.prompts.add("typed later")
        store.prompts.set_eval_only([typed])
        assert "typed later" not in {p.text for p in store.prompts.for_labeling(20)}
        store.prompts.set_eval_only([typed], eval_only=False)
        assert "typed later" in {p.text for p in store.prompts.for_labeling(20)}


def test_labels_on_a_prompt_held_out_later_never_train_or_export(store):
    kept, held = vote(store, "left", "kept"), vote(store, "right", "held")
    both_bad = vote(store, "both_bad", "held too")
    held_prompts = [j.prompt_id for j in store.judgements.list() if j.id in (held, both_bad)]
    store.prompts.set_eval_only(held_prompts)
    assert [p.judgement_id for p in store.training_data.preference_pairs(unused_only=True)] == [kept]
    assert store.training_data.unpaired_examples() == []


def test_a_prompt_a_round_trained_on_cannot_be_held_out(store):
    trained = vote(store, "left", "trained")
    train_on(store, [trained])
    (judgement,) = store.judgements.list()
    with pytest.raises(StoreError, match="has trained a round, so it cannot be held out"):
        store.prompts.set_eval_only([judgement.prompt_id])
    with pytest.raises(StoreError, match="No prompt with id 99"):
        store.prompts.set_eval_only([99])
    assert store.prompts.count_eval_only() == 0


def test_holding_out_picks_unlabeled_prompts_only_and_refuses_too_many_changing_nothing(store):
    labeled = {vote(store, "left", f"labeled {i}") for i in range(3)}
    labeled_prompts = {j.prompt_id for j in store.judgements.list() if j.id in labeled}
    fresh = {store.prompts.add(f"fresh {i}") for i in range(4)}
    with pytest.raises(StoreError, match="Only 4 prompts have no label"):
        store.prompts.hold_out(5)
    assert store.prompts.count_eval_only() == 0, "nothing held out by a refused call"
    with pytest.raises(StoreError, match="a whole number >= 1"):
        store.prompts.hold_out(0)
    held = store.prompts.hold_out(3)
    assert len(held) == 3 and set(held) <= fresh and not set(held) & labeled_prompts
    store.generations.add(held[0], "base", "sampled before it was held out", SETTINGS)  # referenced, as in the app
    assert {p.id for p in store.prompts.for_labeling(10)}.isdisjoint(held), "held-out prompts are not sampled"
    assert store.prompts.give_back_held_out() == 3 and store.prompts.count_eval_only() == 0


def test_the_held_out_pool_leaves_out_trained_prompts_and_prefers_eval_only_ones(store):
    trained = vote(store, "left", "trained")
    untrained = vote(store, "right", "labeled, not trained yet")
    train_on(store, [trained])
    store.prompts.add("fresh")
    assert {p.text for p in store.prompts.for_arena(10)} == {"labeled, not trained yet", "fresh"}
    assert store.prompts.count_held_out() == (0, 2) and untrained
    store.prompts.add_many(["eval 1", "eval 2"], source="eval", eval_only=True)
    pool = [p.text for p in store.prompts.for_arena(10)]
    assert sorted(pool[:2]) == ["eval 1", "eval 2"] and "trained" not in pool
    battle(store, "eval 1")  # fewest battles first, among eval-only prompts
    assert [p.text for p in store.prompts.for_arena(2)] == ["eval 2", "eval 1"]
    (eval_2,) = [p.id for p in store.prompts.for_arena(1)]
    assert [p.text for p in store.prompts.for_arena(1, exclude_ids=[eval_2])] == ["eval 1"]


def test_voted_battles_and_counts_per_pair(store):
    first, second = battle(store, "one", left="base"), battle(store, "two", left="round_001")
    unvoted = battle(store, "three")
    store.battles.vote(first, "left", "ana")  # base was on the left: base wins
    store.battles.vote(second, "tie", "ana")
    assert store.battles.voted() == [VotedBattle("base", "round_001", "a"), VotedBattle("base", "round_001", "tie")]
    assert store.battles.voted(versions=["base", "round_002"]) == []
    assert store.battles.pair_counts() == {("base", "round_001"): 2}
    assert store.battles.get(unvoted).winner is None and len(store.battles.list()) == 3
