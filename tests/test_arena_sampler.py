"""The arena on a real store and the tiny model: battles kept ready, sides at random, each battle to one labeler,
votes that reveal the names, results, and held-out prompts that the label sampler never picks.

    python -m pytest tests/test_arena_sampler.py -q
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from helpers import fake_round, wait_until

from labeling.arena import Arena, ShownBattle
from labeling.loop import Loop
from labeling.sampler import PairSampler
from services.versions import Versions
from serving import SamplingSettings, TorchPolicyServer
from storage import Store


@pytest.fixture
def arena(tiny_model_dir, tmp_path):
    """An arena beside a labeling loop on the tiny model: base and round_001 (a random LoRA), 12 prompts,
    8 new tokens, battles queued 4 deep, sides drawn with seed 0."""
    store = Store(":memory:")
    store.prompts.add_many([f"Tell me about topic {i}." for i in range(12)], source="test")
    fake_round(store, tiny_model_dir, tmp_path / "round_001", init_lora_weights=False)
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    sampler = PairSampler(store, server, depth=3, seed=0)
    sampler.set_settings(SamplingSettings(max_new_tokens=8))
    loop = Loop(store, server, sampler)
    arena = Arena.for_loop(loop, Versions(store, server, sampler), seed=0)
    yield arena
    arena.close()
    sampler.stop()
    store.close()


VERSIONS = ("round_001", "base")


def wait_queued(arena: Arena, n: int, timeout: float = 120) -> None:
    assert wait_until(lambda: arena.queued(VERSIONS) >= n, timeout), f"fewer than {n} battles queued after {timeout} s"


def test_sides_are_random_and_each_battle_goes_to_one_labeler(arena):
    taken: list[tuple[str, ShownBattle]] = []
    lock = threading.Lock()

    def labeler(name: str) -> None:
        for _ in range(4):
            shown = arena.next_battle(VERSIONS, name)
            with lock:
                taken.append((name, shown))

    threads = [threading.Thread(target=labeler, args=(name,)) for name in ("ana", "bob", "cy")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = {b.id: b for b in arena.store.battles.list()}
    assert len(taken) == len(stored) == 12, "every battle handed out once"
    assert len({(b.generation_a, b.generation_b) for b in stored.values()}) == 12, "no completion in two battles"
    for name, shown in taken:
        record = stored[shown.id]
        assert record.labeler == name
        left_id = record.generation_a if record.left_version == record.version_a else record.generation_b
        assert arena.store.generations.get(left_id).text == shown.left, "A is the left version's completion"
    lefts = Counter(b.left_version for b in stored.values())
    assert set(lefts) == {"base", "round_001"} and min(lefts.values()) >= 3, lefts


def test_a_battle_is_both_versions_answer_to_one_prompt_with_the_same_settings(arena):
    shown = arena.next_battle(VERSIONS, "ana")
    record = arena.store.battles.get(shown.id)
    a, b = arena.store.generations.get(record.generation_a), arena.store.generations.get(record.generation_b)
    assert (record.version_a, record.version_b) == ("base", "round_001"), "stored in sorted order"
    assert (a.version, b.version) == ("base", "round_001") and a.prompt_id == b.prompt_id == record.prompt_id
    assert a.settings == b.settings and a.settings["max_new_tokens"] == 8
    assert arena.store.prompts.get(record.prompt_id).text == shown.prompt
    assert "base" not in repr(shown) and "round_001" not in repr(shown), "what a labeler gets names no version"


def test_the_arena_samples_only_once_asked_and_takes_from_its_queue_while_the_model_is_busy(arena):
    assert not arena.sampler.running() and arena.store.generations.count() == 0, "nothing before a request"
    arena.next_battle(VERSIONS, "ana")
    wait_queued(arena, 3)  # batches of 2 wait for room: 3 of 4, then no more
    assert wait_until(arena.sampler.waiting), "the sampler waits for room"
    assert arena.queued(VERSIONS) == 3, "the queue stays small"
    with arena.sampler.server._lock:  # the model busy (a label batch, a long comparison): battles still come
        started = time.monotonic()
        shown = [arena.next_battle(VERSIONS, "ana") for _ in range(2)]
        assert time.monotonic() - started < 1.0 and len({s.id for s in shown}) == 2


def test_an_idle_arena_stops_sampling_until_asked_again(arena):
    arena.sampler.idle_s = 0.5
    arena.next_battle(VERSIONS, "ana")  # then nobody asks: the batch in flight ends, and no other starts
    assert wait_until(arena.sampler.waiting), "idle: no batch in flight and none to start"
    made = arena.store.generations.count()
    assert arena.sampler.running() and arena.queued(VERSIONS) < arena.sampler.depth, "room it leaves unfilled"
    for _ in range(2):  # room for a full batch, however many were queued when it went idle
        arena.next_battle(VERSIONS, "ana")
    assert wait_until(lambda: arena.store.generations.count() > made), "asked again, it samples again"


def test_a_vote_reveals_the_names_and_the_results_count_it(arena):
    arena.min_battles = 5  # the app's threshold is 10; fewer battles show the same switch
    results = arena.results()
    assert results.battles == 0 and results.pairs == [] and "No votes yet" in results.note
    winners = []
    for i in range(6):
        shown = arena.next_battle(VERSIONS, "ana")
        revealed = arena.vote(shown.id, "left" if i < 4 else "tie", "ana")
        winners.append(revealed.left_version if i < 4 else "tie")
        assert {revealed.left_version, revealed.right_version} == {"base", "round_001"}
        if i == 3:
            (pair,) = arena.results().pairs
            assert pair.rate.n == 4 and not pair.rate.enough, "below the threshold: not enough battles yet"
    results = arena.results()
    (pair,) = results.pairs
    assert (pair.version, pair.opponent) == ("round_001", "base"), "the newer version's side"
    assert pair.wins == winners.count("round_001") and pair.losses == winners.count("base") and pair.ties == 2
    assert pair.rate.enough and pair.rate.low <= pair.rate.rate <= pair.rate.high
    assert pair.rate.rate == pytest.approx((pair.wins + 1) / 6), "a tie counts half"
    assert {s.model for s in results.strengths} == {"base", "round_001"}
    assert [s.battles for s in results.strengths] == [6, 6]
    base = next(s for s in results.strengths if s.model == "base")
    assert base.rating == base.low == base.high == 1000.0, "the base anchors the scale"
    assert results.matrix.battles[0, 1] == 6 and arena.results() is results, "cached until the next vote"


def test_versions_are_checked_and_latest_vs_previous_is_the_two_newest(arena):
    assert arena.latest_pair() == ("round_001", "base")
    with pytest.raises(ValueError, match="Unknown version 'round_009'; pick two of base, round_001"):
        arena.next_battle(("round_009", "base"), "ana")
    with pytest.raises(ValueError, match="two different versions"):
        arena.next_battle(("base", "base"), "ana")


def test_the_label_sampler_never_picks_a_held_out_prompt_and_the_arena_prefers_them(arena, tiny_model_dir):
    store = arena.store
    prompts = store.prompts.list()
    held = {p.id for p in prompts[:9]}
    store.prompts.set_eval_only(held)
    loop_sampler = PairSampler(store, arena.sampler.server, depth=2, seed=1)
    loop_sampler.set_settings(SamplingSettings(max_new_tokens=4))
    pairs = [loop_sampler.take() for _ in range(4)]
    assert not held & {p.prompt_id for p in pairs}
    battles = [arena.next_battle(VERSIONS, "ana") for _ in range(3)]
    assert {store.battles.get(b.id).prompt_id for b in battles} <= held


def test_holding_out_drops_the_queued_pairs_of_those_prompts(loop):
    loop.sampler.start()
    first = loop.next_pair()  # the queue fills behind it
    wait_until(lambda: loop.sampler.queued() >= 3)
    held = set(loop.hold_out(loop.store.prompts.count_unjudged()))  # every prompt without a label
    assert first.prompt_id in held, "a pair on screen has no vote yet"
    loop.sampler.stop()
    queued = [loop.sampler.take(timeout=0) for _ in range(loop.sampler.queued())]
    assert not [p for p in queued if p.prompt_id in held], "no queued pair of a held-out prompt is handed out"
