"""Arena votes as training pairs, opt-in per round: which battles become pairs, the round's lineage, exports, and
the whole path through the launched app.

    python -m pytest tests/test_arena_training.py -q
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from helpers import SETTINGS, fake_round, launch, vote_pairs, votes

import storage.__main__
from storage import Store, StoreError
from storage.labels import PreferencePair, UnpairedExample, as_unpaired
from training.config import DPOConfig
from training.data import split_heldout
from training.folder import INPUT_FILE
from training.plan import plan_round
from training.trainer import TrainingError


def battle(store: Store, side: str | None, prompt: str, left: str = "round_001", eval_only: bool = False) -> int:
    """A battle base vs round_001 on a new `prompt` (completions "base: <prompt>" / "round_001: <prompt>"), with
    `left` shown on the left, voted `side` as shown (None: not voted yet); returns its id."""
    store.prompts.add_many([prompt], source="test", eval_only=eval_only)
    (prompt_id,) = [p.id for p in store.prompts.list() if p.text == prompt]
    a = store.generations.add(prompt_id, "base", f"base: {prompt}", SETTINGS)
    b = store.generations.add(prompt_id, "round_001", f"round_001: {prompt}", SETTINGS)
    battle_id = store.battles.add(prompt_id, "base", "round_001", a, b, left, "ana")
    if side is not None:
        store.battles.vote(battle_id, side, "ana")
    return battle_id


def finish(store: Store, battle_ids: list[int], judgement_ids: list[int] = ()) -> int:
    """A finished round that trained on these battles (and judgements); returns its id."""
    round_id = store.rounds.start({}, None, "tiny")
    store.rounds.finish(round_id, "runs/round_001/adapter", {}, judgement_ids, battle_ids=battle_ids)
    return round_id


# -- storage ---------------------------------------------------------------------------------------------
def test_the_winners_completion_is_chosen_whichever_side_it_was_shown_on(store):
    shown_left_won = battle(store, "left", "p1", left="round_001")  # round_001 on the left, picked: b wins
    shown_right_won = battle(store, "right", "p2", left="round_001")  # base on the right, picked: a wins
    base_left_won = battle(store, "left", "p3", left="base")
    assert [store.battles.get(i).winner for i in (shown_left_won, shown_right_won, base_left_won)] == ["b", "a", "a"]
    assert store.battles.preference_pairs() == [
        PreferencePair("p1", "round_001: p1", "base: p1", battle_id=shown_left_won),
        PreferencePair("p2", "base: p2", "round_001: p2", battle_id=shown_right_won),
        PreferencePair("p3", "base: p3", "round_001: p3", battle_id=base_left_won),
    ]


def test_ties_both_bad_unvoted_and_eval_only_battles_are_not_training_pairs(store):
    battle(store, "tie", "tied")
    battle(store, "both_bad", "both bad")
    battle(store, None, "not voted")
    battle(store, "left", "held out for evaluation", eval_only=True)
    decisive = battle(store, "right", "decisive")
    assert [p.battle_id for p in store.battles.preference_pairs()] == [decisive]
    plan = plan_round(store, DPOConfig(min_pairs=1, heldout_fraction=0.0, arena_pairs=True, loss_type="kto"))
    assert plan.items == [
        UnpairedExample("decisive", "base: decisive", True, battle_id=decisive),
        UnpairedExample("decisive", "round_001: decisive", False, battle_id=decisive),
    ], "KTO reads an arena pair as one 👍 and one 👎, as it does a left/right vote"


def test_a_round_that_trained_on_a_battle_uses_it_up_and_takes_its_prompt_out_of_the_arena(store):
    first, second = battle(store, "left", "used"), battle(store, "left", "unused")
    assert store.prompts.count_held_out() == (0, 2)
    failed = store.rounds.start({}, None, "tiny")
    store.rounds.fail(failed, "out of memory")
    assert [p.battle_id for p in store.battles.preference_pairs(unused_only=True)] == [first, second]
    round_id = finish(store, [first])
    assert store.rounds.battle_ids(round_id) == [first] and store.rounds.get(round_id).n_arena == 1
    store.rounds.set_serving(store.rounds.get(round_id).version)
    assert [p.battle_id for p in store.battles.preference_pairs(unused_only=True)] == [second]
    assert len(store.battles.preference_pairs()) == 2, "a fresh round may train on it again"
    assert [p.text for p in store.prompts.for_arena(10)] == ["unused"]
    with pytest.raises(StoreError, match="Prompt 1 has trained a round, so it cannot be held out"):
        store.prompts.set_eval_only([1])
    with pytest.raises(StoreError, match=r"names battles that do not exist \(99\)"):
        finish(store, [99])


def test_plan_adds_arena_pairs_only_when_the_round_opts_in_and_unused_only_when_continuing(store):
    (judged,) = votes(store, "left")
    used, unused = battle(store, "left", "used"), battle(store, "right", "unused")
    round_id = finish(store, [used], [judged])
    store.rounds.set_serving(store.rounds.get(round_id).version)

    def planned(**fields) -> list[tuple]:
        items = plan_round(store, DPOConfig(min_pairs=1, heldout_fraction=0.0, **fields)).items
        return [(p.judgement_id, p.battle_id) for p in items]

    assert planned(continue_from_serving=False) == [(judged, None)], "off by default"
    assert planned(continue_from_serving=False, arena_pairs=True) == [(judged, None), (None, used), (None, unused)]
    assert planned(arena_pairs=True) == [(None, unused)]
    with pytest.raises(TrainingError, match="Too few new preference pairs: 0"):
        planned()


def test_exports_leave_arena_votes_out_unless_asked_and_mark_where_each_row_came_from(store_with_votes, tmp_path):
    won = battle(store_with_votes, "left", "Which is warmer?")
    battle(store_with_votes, "tie", "A tie.")
    plain, both = tmp_path / "plain.jsonl", tmp_path / "both.jsonl"
    assert store_with_votes.training_data.export_pairs(plain) == 2
    first = json.loads(plain.read_text().splitlines()[0])
    assert (
        set(first) == {"prompt", "chosen", "rejected", "judgement_id", "selection"} and first["selection"] == "random"
    )
    assert store_with_votes.training_data.export_pairs(both, include_arena=True) == 3
    rows = [json.loads(line) for line in both.read_text().splitlines()]
    assert [(r["source"], r["judgement_id"], r["battle_id"]) for r in rows] == [
        ("label", 1, None),
        ("label", 3, None),
        ("arena", None, won),
    ]
    assert [r["selection"] for r in rows] == ["random", "random", None], "a battle's pair was not picked from a pool"
    assert rows[2]["chosen"][0]["content"] == "round_001: Which is warmer?"
    export_unpaired = store_with_votes.training_data.export_unpaired
    assert export_unpaired(tmp_path / "kto.jsonl", include_arena=True) == 8  # 6 from labels
    kto = [json.loads(line) for line in (tmp_path / "kto.jsonl").read_text().splitlines()]
    assert [r["label"] for r in kto if r["source"] == "arena"] == [True, False]
    with Store(":memory:") as only_arena:
        battle(only_arena, "right", "Arena only.")
        with pytest.raises(StoreError, match="label some pairs"):
            only_arena.training_data.export_pairs(tmp_path / "none.jsonl")
        assert only_arena.training_data.export_pairs(tmp_path / "arena.jsonl", include_arena=True) == 1


def test_the_export_command_includes_arena_votes_when_asked(tmp_path, capsys):
    db = tmp_path / "loop.duckdb"
    with Store(db) as store:
        votes(store, "left")
        battle(store, "right", "Arena prompt.")
    assert storage.__main__.main(["export", str(tmp_path / "a.jsonl"), "--db", str(db)]) == 0
    assert storage.__main__.main(["export", str(tmp_path / "b.jsonl"), "--db", str(db), "--include-arena"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"exported 1 pairs to {tmp_path / 'a.jsonl'}",
        f"exported 2 pairs to {tmp_path / 'b.jsonl'}",
    ]
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["label", "arena"]


def test_a_battles_two_kto_examples_stay_on_one_side_of_the_held_out_split():
    arena = [PreferencePair(f"p{i}", "won", "lost", battle_id=i) for i in range(5)]
    for seed in range(5):
        train, heldout = split_heldout(as_unpaired(arena), 0.2, seed)
        assert {e.battle_id for e in train}.isdisjoint({e.battle_id for e in heldout}) and len(heldout) == 2


# -- a real round on the tiny model ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_round_trains_on_arena_votes_only_when_ticked_and_records_them(tiny_model_dir, tmp_path, train_round):
    store = Store(tmp_path / "loop.duckdb")
    judged = vote_pairs(store, [PreferencePair(f"Name a colour {i}.", "Blue.", "No.") for i in range(2)])
    battles = [battle(store, "left" if i % 2 else "right", f"Arena prompt {i}.") for i in range(2)]
    small = DPOConfig(
        learning_rate=5e-3, epochs=1, min_pairs=2, heldout_fraction=0.0, max_length=64, continue_from_serving=False
    )
    arena = dataclasses.replace(small, arena_pairs=True)
    with_arena = train_round(store, arena, model=tiny_model_dir, runs_dir=tmp_path / "runs")
    assert (with_arena.n_pairs, with_arena.n_arena) == (2, 2)
    assert store.rounds.battle_ids(with_arena.id) == battles and store.rounds.judgement_ids(with_arena.id) == judged
    folder = tmp_path / "runs" / with_arena.version
    rows = [json.loads(line) for line in (folder / INPUT_FILE).read_text().splitlines()]
    assert [(r["source"], r["battle_id"]) for r in rows] == [("label", None)] * 2 + [("arena", b) for b in battles]
    assert json.loads((folder / "judgements.json").read_text())["battles"] == {"train": battles, "heldout": []}
    assert store.prompts.count_held_out() == (0, 0), "the trained prompts left the arena's pool"

    without = train_round(store, small, model=tiny_model_dir, runs_dir=tmp_path / "runs")
    assert (without.n_pairs, without.n_arena) == (2, 0)
    assert store.rounds.battle_ids(without.id) == []
    rows = [json.loads(line) for line in (tmp_path / "runs" / without.version / INPUT_FILE).read_text().splitlines()]
    assert len(rows) == 2 and "source" not in rows[0]
    store.close()


# -- the launched app ------------------------------------------------------------------------------------
def rounds_table(client) -> list[dict]:
    """The Train tab's rounds table as rows keyed by column."""
    outputs = client.predict(api_name="/round_status")
    (table,) = [o for o in outputs if isinstance(o, dict) and "headers" in o and "version" in o["headers"]]
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


@pytest.mark.slow
def test_arena_votes_train_a_round_started_with_the_arena_tick(tiny_model_dir, tmp_path):
    with Store(tmp_path / "loop.duckdb") as store:
        fake_round(store, tiny_model_dir, tmp_path / "round_001", init_lora_weights=False)
    for client, proc in launch(tiny_model_dir, tmp_path, args=("--backend", "eager")):
        client.predict(0.8, 0.95, 8, api_name="/apply_settings")
        client.predict("round_001", "base", "tester", api_name="/arena_next")
        for route in ("/arena_vote_a", "/arena_vote_b", "/arena_vote_tie", "/arena_vote_a"):
            client.predict("round_001", "base", "tester", api_name=route)
        with pytest.raises(Exception, match="Too few new preference pairs: 0"):
            client.predict(min_pairs=3, api_name="/start_round")
        fields = {"epochs": 1, "max_length": 64, "min_pairs": 3, "heldout_fraction": 0.0, "arena_pairs": True}
        assert client.predict(**fields, api_name="/start_round") == "Round started."
        for _ in range(600):
            rows = rounds_table(client)
            if rows[-1]["status"] != "running":
                break
            time.sleep(0.5)
        assert (rows[-1]["version"], rows[-1]["status"], rows[-1]["pairs"], rows[-1]["arena"]) == (
            "round_002",
            "done",
            0,
            3,
        ), rows
        path, message = client.predict("jsonl", "pairs", True, api_name="/export")
        assert [json.loads(line)["source"] for line in Path(path).read_text().splitlines()] == ["arena"] * 3
        proc.kill()
        proc.wait()
    with Store(tmp_path / "loop.duckdb") as store:
        trained = store.rounds.battle_ids(2)
        assert trained == [b.id for b in store.battles.list() if b.winner in ("a", "b")] and len(trained) == 3
