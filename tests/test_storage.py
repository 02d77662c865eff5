"""Store behaviour on an in-memory database: round trips, vote integrity, which votes are pairs or KTO examples,
lineage, serving, threads. The store on disk (migrations, durability, the file lock, exports, the export CLI) is
tests/test_storage_files.py.

    python -m pytest tests/test_storage.py -q
"""

from __future__ import annotations

import threading
from datetime import datetime

import pytest
from helpers import SETTINGS, vote, votes

from storage import (
    CHOICES,
    PAIR_CHOICES,
    Generation,
    Judgement,
    Prompt,
    Rating,
    Store,
    StoreError,
    UnpairedExample,
    round_version,
)


def test_prompts_generations_and_judgements_round_trip(store):
    prompt = store.prompts.add("  Explain tides.\n")
    assert store.prompts.get(prompt) == Prompt(prompt, "Explain tides.", "typed")
    gen = store.generations.add(prompt, "round_001", "The moon pulls.", SETTINGS)
    other = store.generations.add(prompt, "round_001", "Wind.", SETTINGS)
    assert store.generations.get(gen) == Generation(gen, prompt, "round_001", "The moon pulls.", SETTINGS)
    judgement = store.judgements.add(prompt, other, gen, "right", "bo", "round_001")
    (stored,) = store.judgements.list()
    assert isinstance(stored, Judgement) and isinstance(stored.created_at, datetime)
    assert (stored.id, stored.left_generation_id, stored.right_generation_id) == (judgement, other, gen)
    assert (stored.choice, stored.labeler, stored.policy_version) == ("right", "bo", "round_001")


def test_the_same_prompt_text_is_stored_once(store):
    first = store.prompts.add("Name a colour.", source="typed")
    assert store.prompts.add("  Name a colour.  ", source="file.txt") == first
    assert store.prompts.count() == 1 and store.prompts.list() == [Prompt(first, "Name a colour.", "typed")]


def test_bulk_import_is_all_or_nothing_and_counts_only_new_prompts(store):
    store.prompts.add("a")
    with pytest.raises(ValueError, match="Prompt 3 is empty; nothing was imported"):
        store.prompts.add_many(["b", "c", "  ", "d"], source="file.txt")
    assert store.prompts.count() == 1
    assert store.prompts.add_many(["a", "b", " b ", "c"], source="file.txt") == 2
    assert [p.text for p in store.prompts.list()] == ["a", "b", "c"]
    assert [p.text for p in store.prompts.list(limit=2)] == ["a", "b"]
    assert {p.source for p in store.prompts.list()[1:]} == {"file.txt"}


def test_prompts_sampled_least_come_first_even_before_their_vote(store):
    skipped = store.prompts.add("sampled once")
    store.generations.add(skipped, "base", "a", SETTINGS)  # on a labeler's screen, not voted on yet
    store.prompts.add_many([f"fresh {i}" for i in range(5)], source="file")
    fresh = [p.id for p in store.prompts.list() if p.id != skipped]
    first_three = store.prompts.for_labeling(3)
    assert len(first_three) == 3 and skipped not in {p.id for p in first_three}
    assert store.prompts.for_labeling(10)[-1].id == skipped
    assert {p.id for p in store.prompts.for_labeling(10, exclude_ids=fresh)} == {skipped}
    assert store.prompts.for_labeling(0) == []
    orders = {tuple(p.id for p in store.prompts.for_labeling(5)) for _ in range(30)}
    assert len(orders) > 1, "prompts with equal counts come in random order"


def test_left_and_right_votes_become_pairs_with_the_picked_side_chosen(store):
    left_vote, right_vote = votes(store, "left", "right")
    pairs = store.training_data.preference_pairs()
    assert [(p.judgement_id, p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (left_vote, "prompt 0", "left 0", "right 0"),
        (right_vote, "prompt 1", "right 1", "left 1"),
    ]
    assert [p.judgement_id for p in store.training_data.preference_pairs(judgement_ids=[right_vote])] == [right_vote]


def test_a_vote_must_name_two_completions_of_its_prompt(store):
    votes(store, "left")
    other = store.prompts.add("other")
    with pytest.raises(StoreError, match="not two completions of prompt"):
        store.judgements.add(other, 1, 2, "left", "ana", "base")
    with pytest.raises(ValueError, match="choice must be one of"):
        store.judgements.add(1, 1, 2, "meh", "ana", "base")


def test_tie_both_bad_and_skip_votes_are_stored_but_are_not_training_pairs(store):
    assert PAIR_CHOICES == ("left", "right") and set(PAIR_CHOICES) < set(CHOICES)
    ids = votes(store, "tie", "both_bad", "skip", "left")
    assert store.judgements.count() == 4
    counts = {c: store.judgements.count(c) for c in CHOICES}
    assert counts == {"left": 1, "right": 0, "tie": 1, "both_bad": 1, "skip": 1}
    assert [p.judgement_id for p in store.training_data.preference_pairs()] == [ids[3]]
    assert store.training_data.preference_pairs(judgement_ids=ids[:3]) == []


def test_both_bad_votes_become_two_undesirable_examples(store):
    left_vote, both_bad_vote, tie_vote = votes(store, "left", "both_bad", "tie")
    examples = store.training_data.unpaired_examples()
    assert [(e.judgement_id, e.completion, e.desirable) for e in examples] == [
        (both_bad_vote, "left 1", False),
        (both_bad_vote, "right 1", False),
    ]
    done = store.rounds.start({}, None, "m")
    store.rounds.finish(done, "adapter", {}, [left_vote, both_bad_vote])
    store.rounds.set_serving(round_version(done))
    assert store.training_data.unpaired_examples(unused_only=True) == []


def test_unused_pairs_exclude_the_serving_lineage_but_not_failed_cancelled_or_unserved_rounds(store):
    first, second, third = votes(store, "left", "right", "left")
    failed = store.rounds.start({"beta": 0.1}, None, "m")
    store.rounds.fail(failed, "CUDA out of memory")
    cancelled = store.rounds.start({"beta": 0.1}, None, "m")
    store.rounds.fail(cancelled, "stopped by the user", status="cancelled")
    assert [p.judgement_id for p in store.training_data.preference_pairs(unused_only=True)] == [first, second, third]
    done = store.rounds.start({"beta": 0.1}, None, "m")
    store.rounds.finish(done, "runs/round_003/adapter", {"loss": 0.4}, [first, third])
    unused = [first, second, third]
    assert [p.judgement_id for p in store.training_data.preference_pairs(unused_only=True)] == unused, (
        "a round that finished but does not serve (held back for review or by the health gate) uses up nothing"
    )
    store.rounds.set_serving(round_version(done))
    assert [p.judgement_id for p in store.training_data.preference_pairs(unused_only=True)] == [second]
    child = store.rounds.start({"beta": 0.1}, done, "m")
    store.rounds.finish(child, "runs/round_004/adapter", {"loss": 0.3}, [second])
    store.rounds.set_serving(round_version(child))
    assert store.training_data.preference_pairs(unused_only=True) == [], "the serving round's ancestors count too"
    store.rounds.set_serving("base")
    unused_now = [p.judgement_id for p in store.training_data.preference_pairs(unused_only=True)]
    assert unused_now == unused, "rolled back: all unused"
    assert len(store.training_data.preference_pairs()) == 3


def test_finish_round_records_results_and_lineage(store):
    first, second = votes(store, "left", "both_bad")
    parent = store.rounds.start({"beta": 0.1}, None, "SmolLM2")
    store.rounds.finish(parent, "runs/round_001/adapter", {"accuracy": 0.75}, [first, second, first])
    child = store.rounds.start({"beta": 0.2}, parent, "SmolLM2")
    done = store.rounds.get(parent)
    assert (done.status, done.version, done.n_pairs) == ("done", "round_001", 2)
    assert done.adapter_path == "runs/round_001/adapter"
    assert done.metrics == {"accuracy": 0.75} and done.config == {"beta": 0.1} and done.error is None
    assert done.finished_at >= done.started_at
    assert store.rounds.judgement_ids(parent) == [first, second]
    running = store.rounds.get(child)
    assert (running.status, running.parent_round, running.n_pairs, running.finished_at) == ("running", parent, 0, None)
    assert [r.id for r in store.rounds.list()] == [parent, child]
    assert store.rounds.judgement_ids(child) == []


def test_single_ratings_round_trip_and_become_unpaired_examples_after_both_bad_votes(store):
    (both_bad,) = votes(store, "both_bad")
    pair = vote(store, "left", "prompt 1", "left 1", "right 1")
    prompt = store.prompts.add("Rate me.")
    good = store.generations.add(prompt, "round_001", "Short and right.", SETTINGS)
    bad = store.generations.add(prompt, "round_001", "Long and wrong.", SETTINGS)
    up = store.ratings.add(good, "up", "ana", "round_001")
    down = store.ratings.add(bad, "down", "bo", "round_001")
    (first, second) = store.ratings.list()
    assert isinstance(first, Rating) and isinstance(first.created_at, datetime)
    assert (first.id, first.prompt_id, first.generation_id) == (up, prompt, good)
    assert (first.rating, first.labeler) == ("up", "ana")
    assert (second.id, second.rating, second.policy_version) == (down, "down", "round_001")
    assert (store.ratings.count(), store.ratings.count("up"), store.ratings.count("down")) == (2, 1, 1)
    assert store.training_data.unpaired_examples() == [
        UnpairedExample("prompt 0", "left 0", False, both_bad, selection="random"),
        UnpairedExample("prompt 0", "right 0", False, both_bad, selection="random"),
        UnpairedExample("Rate me.", "Short and right.", True, rating_id=up),
        UnpairedExample("Rate me.", "Long and wrong.", False, rating_id=down),
    ]
    assert [p.judgement_id for p in store.training_data.preference_pairs()] == [pair], "ratings never become DPO pairs"


def test_a_done_round_uses_up_its_ratings_and_records_them(store):
    prompt = store.prompts.add("Rate me.")
    ids = [store.ratings.add(store.generations.add(prompt, "base", t, SETTINGS), "up", "ana", "base") for t in "abc"]
    failed = store.rounds.start({}, None, "m")
    store.rounds.fail(failed, "boom")
    assert [e.rating_id for e in store.training_data.unpaired_examples(unused_only=True)] == ids
    done = store.rounds.start({}, None, "m")
    store.rounds.finish(done, "runs/round_002/adapter", {}, [], rating_ids=[ids[2], ids[0], ids[0]])
    store.rounds.set_serving(round_version(done))
    assert [e.rating_id for e in store.training_data.unpaired_examples(unused_only=True)] == [ids[1]]
    assert store.rounds.rating_ids(done) == [ids[0], ids[2]] and store.rounds.rating_ids(failed) == []
    round_ = store.rounds.get(done)
    assert (round_.n_pairs, round_.n_ratings) == (0, 2)
    with pytest.raises(StoreError, match=r"ratings that do not exist \(99\)"):
        store.rounds.finish(store.rounds.start({}, None, "m"), "a", {}, [], rating_ids=[99])
    assert store.rounds.rating_ids(3) == [] and store.rounds.get(3).status == "running"


def test_a_round_naming_unknown_judgements_is_not_finished_at_all(store):
    (known,) = votes(store, "left")
    round_id = store.rounds.start({}, None, "m")
    with pytest.raises(StoreError, match=r"judgements that do not exist \(99\)"):
        store.rounds.finish(round_id, "adapter", {"loss": 1.0}, [known, 99])
    assert store.rounds.get(round_id).status == "running" and store.rounds.judgement_ids(round_id) == []


def test_a_round_ends_only_once(store):
    round_id = store.rounds.start({}, None, "m")
    store.rounds.finish(round_id, "adapter", {}, [])
    with pytest.raises(StoreError, match="is done, not running"):
        store.rounds.finish(round_id, "adapter", {}, [])
    with pytest.raises(StoreError, match="already done"):
        store.rounds.fail(round_id, "late error")
    assert store.rounds.get(round_id).status == "done"


def test_rounds_left_running_by_a_stopped_app_are_marked_failed(store):
    stale = store.rounds.start({}, None, "m")
    finished = store.rounds.start({}, None, "m")
    store.rounds.finish(finished, "adapter", {}, [])
    assert store.rounds.mark_interrupted() == 1
    assert store.rounds.get(stale).status == "failed"
    assert store.rounds.get(stale).error == "interrupted: the app stopped during this round"
    assert store.rounds.get(finished).status == "done" and store.rounds.mark_interrupted() == 0


def test_serving_version_defaults_to_base_and_only_takes_done_rounds(store):
    assert store.rounds.get_serving() == "base"
    done = store.rounds.start({}, None, "m")
    store.rounds.finish(done, "adapter", {}, [])
    store.rounds.start({}, done, "m")
    store.rounds.set_serving("round_001")
    assert store.rounds.get_serving() == "round_001"
    with pytest.raises(StoreError, match="round_002 is not a finished round"):
        store.rounds.set_serving("round_002")
    with pytest.raises(StoreError, match="did you mean round_001"):
        store.rounds.set_serving("round_1")
    store.rounds.set_serving("base")
    assert store.rounds.get_serving() == "base"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.prompts.add(" \n "), ValueError, "Prompt is empty: type some text first"),
        (lambda s: s.prompts.get(42), StoreError, "No prompt with id 42"),
        (lambda s: s.generations.get(42), StoreError, "No generation with id 42"),
        (lambda s: s.generations.add(42, "base", "x", {}), StoreError, "No prompt with id 42; add the prompt"),
        (lambda s: s.judgements.add(1, 1, 2, "meh", "ana", "base"), ValueError, "choice must be one of left, right"),
        (lambda s: s.judgements.add(2, 1, 2, "left", "ana", "base"), StoreError, "not two completions of prompt 2"),
        (lambda s: s.judgements.add(1, 1, 1, "left", "ana", "base"), StoreError, "fetch a new pair and vote again"),
        (lambda s: s.judgements.add(1, 1, 9, "left", "ana", "base"), StoreError, "not two completions"),
        (lambda s: s.judgements.count("lft"), ValueError, "choice must be one of"),
        (lambda s: s.prompts.list(limit=-1), ValueError, "limit must be >= 0"),
        (lambda s: s.rounds.start({}, 7, "m"), StoreError, "No round 7"),
        (lambda s: s.rounds.get(7), StoreError, "No round 7; pick one from the round history"),
        (lambda s: s.rounds.finish(7, "a", {}, []), StoreError, "No round 7"),
        (lambda s: s.rounds.fail(7, "boom"), StoreError, "No round 7"),
        (lambda s: s.rounds.fail(1, "boom", status="crashed"), ValueError, "'failed' or 'cancelled'"),
        (lambda s: s.rounds.set_serving("latest"), StoreError, "Unknown version 'latest': use 'base' or 'round_NNN'"),
        (lambda s: s.rounds.set_serving("round_007"), StoreError, "No round 7"),
        (lambda s: s.training_data.export_pairs("pairs.csv", "csv"), StoreError, "Unknown export format 'csv'"),
        (lambda s: s.training_data.export_unpaired("rows.csv", "csv"), StoreError, "Unknown export format 'csv'"),
        (lambda s: s.ratings.add(1, "meh", "ana", "base"), ValueError, "rating must be one of up, down; got 'meh'"),
        (lambda s: s.ratings.add(99, "up", "ana", "base"), StoreError, "No generation with id 99; fetch a new pair"),
        (lambda s: s.ratings.count("meh"), ValueError, "rating must be one of up, down"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(store, call, error, message):
    prompt = store.prompts.add("p")
    store.prompts.add("q")
    store.generations.add(prompt, "base", "a", SETTINGS)
    store.generations.add(prompt, "base", "b", SETTINGS)
    with pytest.raises(error, match=message):
        call(store)
    assert store.judgements.count() == 0 and store.ratings.count() == 0


def test_exporting_with_no_pairs_says_to_label_first(store, tmp_path):
    votes(store, "tie", "skip")
    with pytest.raises(StoreError, match=r"No preference pairs to export yet: label some pairs \(pick left or right\)"):
        store.training_data.export_pairs(tmp_path / "pairs.jsonl")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreError, match="Nothing to export yet: vote on pairs or rate completions"):
        store.training_data.export_unpaired(tmp_path / "rows.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_concurrent_votes_imports_and_reads_from_many_threads_all_land(store):
    prompt = store.prompts.add("shared")
    errors: list[BaseException] = []

    def labeler(n: int) -> None:
        try:
            for i in range(25):
                a, b = (store.generations.add(prompt, "base", f"{n}.{i}{side}", SETTINGS) for side in "ab")
                store.judgements.add(prompt, a, b, CHOICES[i % len(CHOICES)], f"labeler {n}", "base")
                own = store.prompts.add(f"thread {n} prompt {i}")
                store.generations.add(own, "base", "text", SETTINGS)
                store.prompts.add("the same prompt from every thread")
                store.prompts.add_many(["bulk x", "bulk y"], source="file")
                store.rounds.set_serving("base")
                store.training_data.preference_pairs(unused_only=True)
                store.prompts.for_labeling(4)
        except BaseException as err:  # noqa: BLE001 - reported below, on the main thread
            errors.append(err)

    threads = [threading.Thread(target=labeler, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.judgements.count() == 200 and store.judgements.count("left") == 40
    assert len({j.id for j in store.judgements.list()}) == 200
    assert store.prompts.count() == 1 + 8 * 25 + 3
    assert len(store.training_data.preference_pairs()) == 80


def test_a_closed_store_says_to_open_it_again():
    store = Store()
    store.close()
    with pytest.raises(StoreError, match=r"closed; open it again"):
        store.prompts.count()


def test_generations_are_counted(store):
    prompt = store.prompts.add("count me")
    assert store.generations.count() == 0
    for text in "ab":
        store.generations.add(prompt, "base", text, SETTINGS)
    assert store.generations.count() == 2


def test_a_pair_is_judged_once_and_a_completion_rated_once(store):
    prompt = store.prompts.add("Name a colour.")
    a, b = (store.generations.add(prompt, "base", t, SETTINGS) for t in ("Red.", "Blue."))
    first = store.judgements.add(prompt, a, b, "left", "ana", "base")
    assert store.judgements.add(prompt, a, b, "left", "ana", "base") == first, "a repeated vote stores nothing"
    with pytest.raises(
        StoreError, match=f"This pair already has vote #{first} \\(left, by ana\\); each pair is judged"
    ):
        store.judgements.add(prompt, b, a, "right", "bo", "base")  # the same pair, shown the other way round
    assert store.judgements.count() == 1
    rated = store.ratings.add(a, "up", "ana", "base")
    assert store.ratings.add(a, "up", "ana", "base") == rated
    with pytest.raises(StoreError, match=f"This completion already has rating #{rated} \\(up, by ana\\)"):
        store.ratings.add(a, "down", "ana", "base")
    assert store.ratings.count() == 1 and store.ratings.add(b, "down", "ana", "base") != rated
