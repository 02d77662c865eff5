"""The labeling loop on a real store and a tiny model: pairs, votes; and beside it the versions (services/versions.py):
serving, rolling back, comparing."""

import json
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from helpers import fake_round, label
from safetensors.torch import load_file, save_file

from labeling.loop import Loop
from labeling.sampler import PairSampler, next_batch_prompts
from models.adapters import adapter_digest
from services.versions import Versions
from serving import SamplingSettings, TorchPolicyServer
from storage import Store, StoreError
from training.config import DPOConfig
from training.runner import RoundRunner
from training.trainer import TrainingError


def test_queued_pairs_are_tagged_and_never_handed_out_twice(loop):
    loop.sampler.start()
    taken, lock = [], threading.Lock()

    def labeler():
        for _ in range(3):
            pair = loop.next_pair()
            with lock:
                taken.append(pair)

    threads = [threading.Thread(target=labeler) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [frozenset((p.left_id, p.right_id)) for p in taken]
    assert len(set(ids)) == len(ids) == 9
    assert all(p.version == "base" for p in taken)
    generation = loop.store.generations.get(taken[0].left_id)
    assert generation.version == "base" and generation.settings["max_new_tokens"] == 8


def test_sides_are_randomized(loop):
    firsts = []
    for _ in range(12):
        pair = loop.next_pair()
        firsts.append(pair.left_id < pair.right_id)
    assert 0 < sum(firsts) < len(firsts)


def test_votes_are_stored_as_shown(loop):
    pair = loop.next_pair()
    judgement_id = loop.vote(pair, "right", labeler="  ")
    (judgement,) = loop.store.judgements.list()
    assert judgement.id == judgement_id and judgement.labeler == "anonymous"
    assert (judgement.left_generation_id, judgement.right_generation_id) == (pair.left_id, pair.right_id)
    (pp,) = loop.store.training_data.preference_pairs()
    assert pp.chosen == pair.right and pp.rejected == pair.left
    with pytest.raises(ValueError, match="choice must be one of"):
        loop.vote(pair, "maybe", labeler="x")


@pytest.mark.slow  # trains a round in its own process
def test_round_serves_rolls_back_and_compares(loop, versions, tiny_model_dir, tmp_path, train_round):
    label(loop, 10)
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
    finished = train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    assert finished.status == "done" and finished.n_pairs == 8 and finished.parent_round is None
    versions.hand_over(finished.version)
    assert loop.server.version == "round_001" == loop.store.rounds.get_serving()
    assert loop.next_pair().version == "round_001", "queued base pairs were dropped"
    assert versions.list() == ["base", "round_001"]

    settings = SamplingSettings(max_new_tokens=8, seed=5)
    assert versions.compare("Hi there", "base", "round_001", settings) == versions.compare(
        "Hi there", "base", "round_001", settings
    )
    with pytest.raises(ValueError, match="Prompt is empty"):
        versions.compare("  ", "base", "round_001", settings)
    with pytest.raises(ValueError, match="Unknown version"):
        versions.compare("Hi", "base", "round_007", settings)

    versions.hand_over("base")
    assert loop.server.version == "base" == loop.store.rounds.get_serving()


@pytest.mark.slow  # trains a round in its own process
def test_second_round_continues_from_the_serving_one_on_unused_pairs(
    loop, versions, tiny_model_dir, tmp_path, train_round
):
    label(loop, 10)
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
    first = train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    versions.hand_over(first.version)
    with pytest.raises(TrainingError, match="Too few new preference pairs: 2"):
        train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    label(loop, 8)
    second = train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    assert second.parent_round == first.id
    assert not set(loop.store.rounds.judgement_ids(first.id)) & set(loop.store.rounds.judgement_ids(second.id))
    fresh = train_round(
        loop.store,
        DPOConfig(**{**config.to_dict(), "continue_from_serving": False}),
        model=str(tiny_model_dir),
        runs_dir=tmp_path,
        device="cpu",
    )
    assert fresh.parent_round is None and fresh.n_pairs == 14


@pytest.mark.slow  # trains a round in its own process
def test_runner_refuses_a_second_round_and_reports_progress(loop, tiny_model_dir, tmp_path):
    label(loop, 10)
    served = []
    runner = RoundRunner(loop.store, str(tiny_model_dir), tmp_path, on_done=served.append, device="cpu")
    runner.start(DPOConfig(learning_rate=5e-3, epochs=2, batch_size=2, min_pairs=4))
    with pytest.raises(TrainingError, match="already running"):
        runner.start(DPOConfig())
    runner.wait(600)  # a first round also samples its diagnostics and the base's
    status = runner.status()
    assert status.state == "done", status
    assert len(status.history) == 8 and served[0].version == "round_001"


@pytest.mark.slow  # trains a round in its own process
def test_cancelled_round_is_recorded_and_keeps_the_previous_policy(loop, versions, tiny_model_dir, tmp_path):
    label(loop, 10)
    runner = RoundRunner(
        loop.store, str(tiny_model_dir), tmp_path, on_done=lambda r: versions.hand_over(r.version), device="cpu"
    )
    runner.cancel()
    runner.start(DPOConfig(learning_rate=5e-3, epochs=50, batch_size=1, min_pairs=4))
    runner.cancel()
    runner.wait(120)
    assert runner.status().state == "cancelled"
    (round_,) = loop.store.rounds.list()
    assert round_.status == "cancelled" and loop.server.version == "base"
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # trains a round in its own process
def test_a_new_version_takes_over_with_its_pairs_already_queued(loop, versions, tiny_model_dir, tmp_path, train_round):
    """No refill wait after a round: serve() returns with pairs from the new version ready, none from the old."""
    label(loop, 10)
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
    finished = train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    loop.sampler.start()
    deadline = time.monotonic() + 60
    while loop.sampler.queued() < loop.sampler.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop.next_pair().version == "base"
    versions.hand_over(finished.version)
    assert loop.sampler.queued() > 0, "the new version's first pairs were sampled before the swap"
    with loop.sampler._cond:
        queued = list(loop.sampler._queue)
    assert queued and {p.version for p in queued} == {"round_001"}
    assert loop.next_pair().version == "round_001" == loop.server.version == loop.store.rounds.get_serving()
    versions.hand_over("base")  # a rollback hands over the same way
    assert loop.sampler.queued() > 0 and loop.next_pair().version == "base"


@pytest.mark.slow  # trains a round in its own process
def test_kept_stale_pairs_stay_tagged_with_their_version(tiny_model_dir, tmp_path, train_round):
    store = Store(":memory:")
    store.prompts.add_many([f"Tell me about topic {i}." for i in range(12)], source="test")
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    sampler = PairSampler(store, server, depth=4, batch_prompts=4, seed=0, keep_stale=True)
    sampler.set_settings(SamplingSettings(max_new_tokens=8))
    loop = Loop(store, server, sampler)
    versions = Versions(store, server, loop.sampler)
    label(loop, 10)
    finished = train_round(
        store,
        DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4),
        model=str(tiny_model_dir),
        runs_dir=tmp_path,
        device="cpu",
    )
    sampler.start()
    deadline = time.monotonic() + 60
    while sampler.queued() < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    versions.hand_over(finished.version)
    pair = loop.next_pair()
    assert pair.version == "base", "a queued base pair was kept"
    loop.vote(pair, "left", labeler="t")
    assert store.judgements.list()[-1].policy_version == "base"
    sampler.stop()


@pytest.mark.slow  # trains a round in its own process
def test_kto_rounds_count_examples_not_pairs_before_starting(loop, tiny_model_dir, tmp_path, train_round):
    label(loop, 3)  # 3 pairs are too few for DPO but give 6 KTO examples (one pair's two held out, 4 to train)
    with pytest.raises(TrainingError, match="Too few new preference pairs"):
        train_round(loop.store, DPOConfig(min_pairs=4), model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    config = DPOConfig(loss_type="kto", learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
    finished = train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    assert finished.status == "done" and finished.n_pairs == 2
    loop.store.rounds.set_serving(finished.version)  # its labels count as used once it serves
    label(loop, 1)  # with the pair the last round held out (not trained on): 4 examples, 3 after holding out
    with pytest.raises(TrainingError, match="Too few new labels for KTO: 4 👍 / 👎 examples"):
        train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")


@pytest.mark.slow  # trains a round in its own process
def test_single_ratings_train_a_kto_round_and_are_used_up_by_it(loop, tiny_model_dir, tmp_path, train_round):
    pairs = [loop.next_pair() for _ in range(3)]
    rated = [loop.rate(p, side, r, labeler="t") for p in pairs for side, r in (("left", "up"), ("right", "down"))]
    (first, *_) = loop.store.ratings.list()
    assert (first.generation_id, first.rating, first.policy_version) == (pairs[0].left_id, "up", "base")
    assert loop.label_counts() == {"pairs": 0, "both_bad": 0, "tie": 0, "up": 3, "down": 3}
    with pytest.raises(ValueError, match="side must be 'left' or 'right'"):
        loop.rate(pairs[0], "middle", "up", labeler="t")
    with pytest.raises(ValueError, match="rating must be one of up, down"):
        loop.rate(pairs[0], "left", "meh", labeler="t")
    # Ratings are not pairs: DPO has nothing to train on, and says what to do.
    with pytest.raises(TrainingError, match="rate completions 👍 / 👎 and pick the kto loss"):
        train_round(loop.store, DPOConfig(), model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    config = DPOConfig(loss_type="kto", learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
    finished = train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=tmp_path, device="cpu")
    trained = loop.store.rounds.rating_ids(finished.id)
    assert finished.status == "done" and (finished.n_pairs, finished.n_ratings) == (0, 5)
    loop.store.rounds.set_serving(finished.version)  # its labels count as used once it serves
    heldout = json.loads((tmp_path / finished.version / "judgements.json").read_text())["ratings"]["heldout"]
    assert sorted(trained + heldout) == rated and len(heldout) == 1
    assert [e.rating_id for e in loop.store.training_data.unpaired_examples(unused_only=True)] == heldout


def test_a_failing_sampler_shows_its_error_instead_of_keeping_labelers_waiting(loop):
    def broken(*args, **kwargs):
        raise RuntimeError("the model fell over")

    loop.server.generate = broken
    loop.sampler.start()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="the model fell over"):
        loop.next_pair()
    assert time.monotonic() - start < 30
    assert "the model fell over" in loop.sampler.last_error


class RecordingServer(TorchPolicyServer):
    """A real TorchPolicyServer that records who asked for each batch, and runs a test's hooks on the way."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []  # (asking thread's name, number of prompts)
        self.before_generate = lambda call: None  # given the call's number, in the asking thread
        self.after_serve = lambda version: None

    def generate(self, prompts, n, settings, version=None):
        self.calls.append((threading.current_thread().name, len(prompts)))
        self.before_generate(len(self.calls))
        return super().generate(prompts, n, settings, version)

    def serve(self, version, adapter_path=None):
        super().serve(version, adapter_path)
        self.after_serve(version)


@pytest.fixture
def make_loop(tiny_model_dir):
    made = []

    def make(depth: int, batch_prompts: int) -> Loop:
        store = Store(":memory:")
        store.prompts.add_many([f"Tell me about topic {i}." for i in range(12)], source="test")
        sampler = PairSampler(store, RecordingServer(str(tiny_model_dir), device="cpu"), depth, batch_prompts, seed=0)
        sampler.set_settings(SamplingSettings(max_new_tokens=8))
        made.append(Loop(store, sampler.server, sampler))
        return made[-1]

    yield make
    for loop in made:
        loop.sampler.stop()
        loop.store.close()


def wait_queued(sampler: PairSampler, n: int) -> None:
    with sampler._cond:
        assert sampler._cond.wait_for(lambda: len(sampler._queue) >= n, timeout=60)


def queued_versions(sampler: PairSampler) -> set[str]:
    with sampler._cond:
        return {p.version for p in sampler._queue}


def trained_round(loop: Loop, tiny_model_dir, runs_dir, train_round):
    label(loop, 10)
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, min_pairs=4)
    return train_round(loop.store, config, model=str(tiny_model_dir), runs_dir=runs_dir, device="cpu")


@pytest.mark.slow  # trains a round in its own process
def test_concurrent_serves_run_one_after_another_and_end_consistent(make_loop, tiny_model_dir, tmp_path, train_round):
    """A round's serve and a Serve click at once: the server, the store and the queue all end on the last one."""
    loop = make_loop(depth=4, batch_prompts=2)
    versions = Versions(loop.store, loop.server, loop.sampler)
    finished = trained_round(loop, tiny_model_dir, tmp_path, train_round)
    loop.sampler.start()
    wait_queued(loop.sampler, 4)
    first_swapped, second_done = threading.Event(), threading.Event()

    def pause_first(version):  # between the first serve's swap and its queue's replacement
        if version == finished.version:
            first_swapped.set()
            second_done.wait(timeout=2)  # serves run one at a time, so the second one cannot finish meanwhile

    loop.server.after_serve = pause_first
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(versions.hand_over, finished.version)
        assert first_swapped.wait(60)
        second = pool.submit(lambda: (versions.hand_over("base"), second_done.set()))
        first.result(), second.result()
    assert loop.server.version == "base" == loop.store.rounds.get_serving()
    assert queued_versions(loop.sampler) == {"base"}


@pytest.mark.slow  # trains a round in its own process
def test_a_failed_store_write_keeps_the_previous_version_serving_with_its_pairs(
    make_loop, tiny_model_dir, tmp_path, train_round
):
    loop = make_loop(depth=4, batch_prompts=2)
    versions = Versions(loop.store, loop.server, loop.sampler)
    finished = trained_round(loop, tiny_model_dir, tmp_path, train_round)
    loop.sampler.start()
    wait_queued(loop.sampler, 4)
    # set_serving's write fails
    loop.store.db.write(lambda cur: cur.execute("ALTER TABLE settings RENAME TO settings_away"))
    with pytest.raises(StoreError, match="Could not record round_001 as the serving version, so base keeps serving"):
        versions.hand_over(finished.version)
    loop.store.db.write(lambda cur: cur.execute("ALTER TABLE settings_away RENAME TO settings"))
    assert loop.server.version == "base" == loop.store.rounds.get_serving()
    assert queued_versions(loop.sampler) == {"base"} and loop.next_pair().version == "base"
    versions.hand_over(finished.version)
    assert loop.server.version == "round_001" == loop.store.rounds.get_serving() == loop.next_pair().version


@pytest.mark.slow  # trains a round in its own process
def test_a_version_that_cannot_sample_is_not_served(make_loop, tiny_model_dir, tmp_path, train_round):
    loop = make_loop(depth=4, batch_prompts=2)
    versions = Versions(loop.store, loop.server, loop.sampler)
    finished = trained_round(loop, tiny_model_dir, tmp_path, train_round)
    weights_file = Path(finished.adapter_path) / "adapter_model.safetensors"
    weights = load_file(weights_file)
    # Finite weights that overflow to inf in the forward pass (the top-p draw fails), recorded as the round's own.
    save_file({k: torch.full_like(v, 1e30) for k, v in weights.items()}, weights_file)
    metrics = finished.metrics | {"adapter_sha256": adapter_digest(finished.adapter_path)}
    loop.store.db.write(lambda cur: cur.execute("UPDATE rounds SET metrics = ? WHERE id = ?", [json.dumps(metrics), 1]))
    loop.sampler.start()
    wait_queued(loop.sampler, 4)
    with pytest.raises(ValueError, match="round_001 could not sample pairs .*so base keeps serving"):
        versions.hand_over(finished.version)
    assert loop.server.version == "base" == loop.store.rounds.get_serving()
    assert queued_versions(loop.sampler) == {"base"} and loop.next_pair().version == "base"


def test_after_a_failed_batch_labelers_wait_for_the_retry_instead_of_sampling_beside_it(make_loop):
    loop = make_loop(depth=2, batch_prompts=1)
    retrying, beside = threading.Event(), threading.Event()

    def script(call):
        if threading.current_thread().name != "pair-sampler":
            beside.set()
        elif call == 1:
            raise RuntimeError("the model fell over")
        elif call == 2:
            retrying.set()
            beside.wait(timeout=1)  # a labeler sampling beside this batch shows up meanwhile

    loop.server.before_generate = script
    loop.sampler.start()
    assert retrying.wait(60)
    assert "the model fell over" in loop.sampler.last_error, "the retry has not finished yet"
    assert loop.next_pair().version == "base"
    assert not beside.is_set() and {name for name, _ in loop.server.calls} == {"pair-sampler"}
    assert loop.sampler.last_error is None


def test_batches_wait_for_room_for_all_their_prompts():
    assert [next_batch_prompts(queued, 8, 4) for queued in range(9)] == [4, 4, 4, 4, 4, 0, 0, 0, 0]
    assert [next_batch_prompts(queued, 3, 4) for queued in range(4)] == [2, 2, 0, 0], "capped at half the depth"
    assert [next_batch_prompts(queued, 2, 4) for queued in range(3)] == [1, 1, 0]


def test_a_take_from_a_full_queue_starts_no_one_prompt_batch(make_loop):
    loop = make_loop(depth=8, batch_prompts=4)
    loop.sampler.start()
    wait_queued(loop.sampler, 8)
    for _ in range(4):
        loop.next_pair()
    wait_queued(loop.sampler, 8)
    assert loop.server.calls == [("pair-sampler", 4)] * 3


@pytest.mark.parametrize("damage", ["bytes", "nan", "gone"])
def test_damaged_weights_are_never_loaded_and_the_app_falls_back_saying_so(tiny_model_dir, tmp_path, damage):
    store = Store(tmp_path / "loop.duckdb")
    first = fake_round(store, tiny_model_dir, tmp_path / "one")
    second = fake_round(store, tiny_model_dir, tmp_path / "two")
    for round_ in store.rounds.list():  # as the runner records them when a round finishes
        metrics = {"adapter_sha256": adapter_digest(round_.adapter_path)}
        store.db.write(lambda cur, r=round_, m=metrics: cur.execute(
            "UPDATE rounds SET metrics = ? WHERE id = ?", [json.dumps(m), r.id]))  # fmt: skip
    store.rounds.set_serving(second)
    weights_file = tmp_path / "two" / "adapter_model.safetensors"
    if damage == "bytes":  # random bytes inside the tensors; the header stays intact, so it still loads
        data = bytearray(weights_file.read_bytes())
        data[-64:] = os.urandom(64)
        weights_file.write_bytes(bytes(data))
    elif damage == "gone":  # the round's folder was moved away
        shutil.rmtree(tmp_path / "two")
    else:  # NaN weights, in a round recorded before checksums were (only the finiteness check can tell)
        save_file({k: torch.full_like(v, float("nan")) for k, v in load_file(weights_file).items()}, weights_file)
        store.db.write(lambda cur: cur.execute("UPDATE rounds SET metrics = '{}' WHERE id = 2"))
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    loop = Loop(store, server, PairSampler(store, server, depth=2))
    versions = Versions(store, server, loop.sampler)
    notice = versions.restore()
    assert server.version == first, notice
    expected = {
        "bytes": "its checksum differs",
        "nan": "not finite \\(NaN or inf\\)",
        "gone": "missing from .* its folder was moved or deleted",
    }[damage]
    assert re.search(f"Could not load {second} .*{expected}.*serving {first} instead", notice), notice
    with pytest.raises(ValueError, match=expected):
        versions.hand_over(second)
    assert server.version == first and store.rounds.get_serving() == second
    store.close()


def test_a_damaged_serving_adapter_falls_back_to_the_last_version_that_loads(tiny_model_dir, tmp_path):
    store = Store(tmp_path / "loop.duckdb")
    first = fake_round(store, tiny_model_dir, tmp_path / "one")
    second = fake_round(store, tiny_model_dir, tmp_path / "two")
    store.rounds.set_serving(second)
    (tmp_path / "two" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu")
    loop = Loop(store, server, PairSampler(store, server, depth=2))
    versions = Versions(store, server, loop.sampler)
    notice = versions.restore()
    assert server.version == first == "round_001"
    assert store.rounds.get_serving() == second, "what the store records is not overwritten"
    assert notice == versions.notice and f"Could not load {second}" in notice and f"serving {first} instead" in notice
    versions.hand_over("base")  # an admin serves a version: the notice is gone
    assert versions.notice is None and store.rounds.get_serving() == "base"
    store.close()


def test_prompts_are_bounded_in_tokens_and_compare_waits_a_bounded_time(tiny_model_dir, monkeypatch):
    import services.versions as versions_module
    from serving import ModelBusy

    store = Store(":memory:")
    server = TorchPolicyServer(str(tiny_model_dir), device="cpu", max_prompt_tokens=32)
    loop = Loop(store, server, PairSampler(store, server, depth=2))
    versions = Versions(store, server, loop.sampler)
    long_prompt = " ".join(f"word{i}" for i in range(200))
    with pytest.raises(ValueError, match=r"This prompt is \d+ tokens; prompts are sampled from at most 32 tokens"):
        loop.add_prompt(long_prompt)
    with pytest.raises(ValueError, match="at most 32 tokens.*--max-prompt-tokens"):
        versions.compare(long_prompt, "base", "base", SamplingSettings(max_new_tokens=4))
    # megabytes are refused by their length alone, before any tokenizing (which would take minutes)
    with pytest.raises(ValueError, match=r"more than 32 tokens \(20,000,000 characters\); .* Shorten it"):
        loop.add_prompt("x" * 20_000_000)
    assert store.prompts.count() == 0
    # an imported long prompt is sampled from its last 32 tokens
    store.prompts.add_many([long_prompt], source="file.jsonl")
    (row,) = server.generate_tokens([long_prompt], 1, SamplingSettings(max_new_tokens=4, seed=0))
    assert len(row[0]) <= 4
    # Compare gives up after a bounded wait while the model is busy, saying so
    monkeypatch.setattr(versions_module, "COMPARE_WAIT_S", 0.2)
    held, release = threading.Event(), threading.Event()

    def busy():
        with server._lock:
            held.set()
            release.wait(10)

    threading.Thread(target=busy).start()
    held.wait(5)
    with pytest.raises(ValueError, match="The model was busy for 0 s"):
        versions.compare("Hi", "base", "base", SamplingSettings(max_new_tokens=4))
    release.set()
    assert isinstance(versions.compare("Hi", "base", "base", SamplingSettings(max_new_tokens=4))[0], str)
    assert issubclass(ModelBusy, TimeoutError)
    store.close()


def test_an_edit_and_an_undo_through_the_loop(loop):
    pair = loop.next_pair()
    (edited,) = loop.edit(pair, "right", "A much better answer.", "ana")
    chosen_over = {p.judgement_id: (p.chosen, p.rejected) for p in loop.store.training_data.preference_pairs()}
    assert chosen_over[edited] == ("A much better answer.", pair.right)
    other = loop.next_pair()
    both = loop.edit(other, "blank", "Written from scratch.", "ana")
    pairs = loop.store.training_data.preference_pairs()
    assert {pairs[-1].rejected, pairs[-2].rejected} == {other.left, other.right} and len(both) == 2
    loop.undo(both, "ana")
    assert [p.judgement_id for p in loop.store.training_data.preference_pairs()] == [edited]
    with pytest.raises(ValueError, match="source must be"):
        loop.edit(other, "middle", "x", "ana")


def test_a_pair_put_back_is_the_next_one_handed_out(loop):
    pair = loop.next_pair()
    loop.put_back(pair)
    again = loop.next_pair()
    assert {again.left_id, again.right_id} == {pair.left_id, pair.right_id}


def test_completions_stopped_by_the_token_limit_are_marked_cut(loop):
    """The tiny random model rarely ends by itself within 8 new tokens: its completions are cut at 8."""
    pair = loop.next_pair()
    cut = [c for c in (pair.left_cut, pair.right_cut) if c is not None]
    assert cut and set(cut) == {8}
    assert loop.store.generations.get(pair.left_id).cut_at == pair.left_cut
