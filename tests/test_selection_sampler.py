"""Candidate pools in the pair sampler, on the tiny llama and a real DuckDB file: two candidates at random are the
pairs of before, a strategy shows the two it picks of N, and each vote and export says how its pair was chosen;
the app's flags for it come from ServiceConfig."""

from __future__ import annotations

import argparse
import json
import random

import pytest

from labeling.loop import Loop
from labeling.sampler import PairSampler
from labeling.selection import PairSelection, pick_spread
from services.config import ServiceConfig
from serving import SamplingSettings, TorchPolicyServer
from storage import Store
from training.cli import add_config_arguments

SETTINGS = SamplingSettings(max_new_tokens=8, seed=5)


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    return TorchPolicyServer(str(tiny_model_dir), device="cpu")


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "loop.duckdb")
    store.prompts.add_many([f"Tell me about topic {i}." for i in range(6)], source="test")
    yield store
    store.close()


def sampler_for(store, server, selection=None, seed=0) -> PairSampler:
    sampler = PairSampler(store, server, depth=3, seed=seed, selection=selection)
    sampler.set_settings(SETTINGS)
    return sampler


def test_two_candidates_at_random_are_the_pairs_of_before(store, server):
    pair = sampler_for(store, server).take()  # no background thread: sampled on the spot
    a, b = server.generate([pair.prompt], n=2, settings=SETTINGS)[0]
    swapped = random.Random(0).random() < 0.5  # the sides, drawn as before: nothing else drew from that RNG
    assert (pair.left, pair.right) == ((str(b), str(a)) if swapped else (str(a), str(b)))
    assert pair.selection == "random" and store.generations.count() == 2


def test_a_strategy_shows_its_pick_of_the_candidates_and_the_vote_and_export_record_how(store, server, tmp_path):
    selection = PairSelection(candidates=4, strategy="spread", control_share=0.5)
    sampler = sampler_for(store, server, selection)
    loop = Loop(store, server, sampler)
    pairs = [loop.next_pair() for _ in range(6)]
    assert {p.selection for p in pairs} == {"spread", "control"}
    assert store.generations.count() == 12, "only the two shown of each prompt's candidates are stored"
    for pair in pairs:
        candidates = [str(c) for c in server.generate([pair.prompt], n=4, settings=SETTINGS)[0]]
        shown = sorted([pair.left, pair.right])
        assert shown in [sorted([a, b]) for i, a in enumerate(candidates) for b in candidates[i + 1 :]]
        if pair.selection == "spread":
            i, j = pick_spread(candidates, random.Random(0))
            assert shown == sorted([candidates[i], candidates[j]])
    ids = [loop.vote(pair, "left", labeler="ana") for pair in pairs]
    assert [(j.id, j.selection) for j in store.judgements.list()] == [
        (i, p.selection) for i, p in zip(ids, pairs, strict=True)
    ]
    store.training_data.export_pairs(tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [r["selection"] for r in rows] == [p.selection for p in pairs]


def test_the_apps_flags_set_the_pair_selection():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ServiceConfig)
    assert ServiceConfig.from_args(parser.parse_args([])).pair_selection() == PairSelection()
    args = parser.parse_args(["--candidates", "6", "--selection", "spread", "--control-share", "0.1"])
    assert ServiceConfig.from_args(args).pair_selection() == PairSelection(6, "spread", 0.1)
    with pytest.raises(ValueError, match="needs at least 3 candidates to choose from"):
        ServiceConfig(selection="spread")


def test_the_committee_is_refitted_from_the_stores_labels_only_when_they_change(store, server):
    selection = PairSelection(candidates=4, strategy="committee", control_share=0.0)
    sampler = sampler_for(store, server, selection)
    loop = Loop(store, server, sampler)
    assert sampler.committee().labels == 0, "no label yet: the committee knows nothing, the picks are random"
    pairs = [loop.next_pair() for _ in range(3)]
    assert {p.selection for p in pairs} == {"committee"}
    first = sampler.committee()
    assert first is sampler.committee(), "no new label: the same committee, not fitted again"
    loop.vote(pairs[0], "left", labeler="ana")
    loop.vote(pairs[1], "tie", labeler="ana")  # a tie is not a decided label
    fitted = sampler.committee()
    assert fitted is not first and fitted.labels == 1 and fitted.weights.any()
    last = loop.vote(pairs[2], "right", labeler="ana")
    assert sampler.committee().labels == 2
    loop.undo([last], labeler="ana")
    assert sampler.committee().labels == 1, "an undone vote leaves the committee at its next fit"
    pair = loop.next_pair()
    assert pair.selection == "committee" and store.judgements.list()[-1].selection == "committee"
