"""One judgement per pair and one rating per completion, whatever the timing: enforced by the database."""

import threading
from functools import partial

import duckdb
import pytest

from storage import Store, StoreError
from storage.migrations import MIGRATIONS

THREADS, ROUNDS = 12, 15


def fire_at_once(calls) -> list:
    """Run every call on its own thread, all released together; returns each one's result or exception."""
    start, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        start.wait()
        try:
            results[i] = call()
        except Exception as err:  # the caller sees the refusal; we count them
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def a_pair(store: Store, i: int) -> tuple[int, int, int]:
    prompt = store.prompts.add(f"Prompt {i}")
    left = store.generations.add(prompt, "base", f"a{i}", {})
    return prompt, left, store.generations.add(prompt, "base", f"b{i}", {})


def test_racing_votes_on_one_pair_store_one_judgement(tmp_path):
    with Store(tmp_path / "race.duckdb") as store:
        for i in range(ROUNDS):
            prompt, left, right = a_pair(store, i)
            # a double click (the same vote twice) beside a contradictory vote from another tab, all at once
            calls = [partial(store.judgements.add, prompt, left, right, "left", "ana", "base")] * (THREADS - 2)
            calls += [partial(store.judgements.add, prompt, right, left, "left", "ana", "base")]  # sides swapped
            calls += [partial(store.judgements.add, prompt, left, right, "right", "bo", "base")]
            results = fire_at_once(calls)
            ids = {r for r in results if isinstance(r, int)}
            refused = [r for r in results if isinstance(r, Exception)]
            assert len(ids) == 1, results
            assert all(isinstance(r, StoreError) and "each pair is judged once" in str(r) for r in refused), refused
            assert len(refused) >= 1  # the one of the two different votes that came second
        assert store.judgements.count() == ROUNDS == len(store.judgements.list())
        assert len(store.training_data.preference_pairs()) == ROUNDS


def test_racing_ratings_on_one_completion_store_one_rating(tmp_path):
    with Store(tmp_path / "race.duckdb") as store:
        for i in range(ROUNDS):
            _, generation, _ = a_pair(store, i)
            calls = [partial(store.ratings.add, generation, "up", "ana", "base")] * (THREADS - 1)
            calls += [partial(store.ratings.add, generation, "down", "bo", "base")]
            results = fire_at_once(calls)
            assert len({r for r in results if isinstance(r, int)}) == 1, results
        assert store.ratings.count() == ROUNDS == len(store.ratings.list())


def test_a_file_judged_twice_before_the_constraint_keeps_both_rows_and_trains_on_the_first(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # a file as an earlier prefloop left it, with a contradictory double vote
    con.execute("CREATE TABLE migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)")
    for name, sql in MIGRATIONS[:2]:
        con.execute(sql)
        con.execute("INSERT INTO migrations VALUES (?, now())", [name])
    con.execute("INSERT INTO prompts (text, source, created_at) VALUES ('p', 'typed', now())")
    for text in ("a", "b"):
        con.execute(
            "INSERT INTO generations (prompt_id, version, text, settings, created_at) "
            "VALUES (1, 'base', ?, '{}', now())",
            [text],
        )
    for choice in ("left", "right"):
        con.execute(
            "INSERT INTO judgements (prompt_id, left_generation_id, right_generation_id, choice, labeler, "
            "policy_version, created_at) VALUES (1, 1, 2, ?, 'ana', 'base', now())",
            [choice],
        )
    con.close()
    with Store(path) as store:
        assert "003_one_label_each" in store.applied_migrations()
        assert [j.choice for j in store.judgements.list()] == ["left", "right"], "nothing is deleted"
        ((pair),) = store.training_data.preference_pairs()
        assert (pair.chosen, pair.rejected, pair.judgement_id) == ("a", "b", 1), "the first vote counts"
        assert store.judgements.count() == 1
        with pytest.raises(StoreError, match="already has vote #1"):
            store.judgements.add(1, 2, 1, "left", "bo", "base")
