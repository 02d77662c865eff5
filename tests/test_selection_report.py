"""A round scores its held-out pairs per pair-selection slice, and the Train tab reports the strategy against its
random control from the rounds' metrics: a real round on the tiny llama, its metrics through the store, the
report (services/rounds.py) and its Markdown (ui/views.py).

    python -m pytest tests/test_selection_report.py -q
"""

import dataclasses
from collections import Counter

import pytest
import torch
from helpers import taste_pairs

from services.rounds import selection_report
from training.config import DPOConfig
from training.folder import read_result
from training.loss import metrics_by_slice
from training.trainer import run_round
from ui import views

SMALL = DPOConfig(
    learning_rate=5e-3, epochs=1, batch_size=4, lora_r=8, lora_alpha=16, max_length=128, heldout_fraction=0.5
)
SELECTION = {i: "control" if i % 3 == 0 else "spread" for i in range(12)}  # judgement id -> how its pair was chosen


def sliced_pairs() -> list:
    """taste_pairs with a third picked as the random control and the rest by spread."""
    return [dataclasses.replace(p, selection=SELECTION[p.judgement_id]) for p in taste_pairs()]


@pytest.fixture(scope="module")
def sliced_round(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "round_001"
    return run_round(SMALL, sliced_pairs(), out, model=str(tiny_model_dir), device="cpu"), out


def test_metrics_by_slice_counts_each_slice_and_leaves_unsliced_pairs_out():
    chosen = torch.tensor([1.0, 0.5, -1.0, 2.0, 0.0])
    rejected = torch.tensor([0.0, 1.0, 0.0, 1.0, -3.0])  # margins 1, -0.5, -1, 1, 3
    found = metrics_by_slice(chosen, rejected, ["spread", "control", "spread", "spread", None])
    assert found == {
        "control": {"n": 1, "correct": 0, "accuracy": 0.0, "margin": -0.5},
        "spread": {"n": 3, "correct": 2, "accuracy": pytest.approx(2 / 3), "margin": pytest.approx(1 / 3)},
    }
    with pytest.raises(ValueError, match="one slice name per pair"):
        metrics_by_slice(chosen, rejected, ["spread"])


def test_a_round_scores_its_held_out_pairs_per_selection_slice(sliced_round):
    result, out = sliced_round
    slices = result.metrics["heldout_by_selection"]
    expected = Counter(SELECTION[i] for i in result.heldout_judgement_ids)
    assert {name: s["n"] for name, s in slices.items()} == expected and set(expected) == {"control", "spread"}
    assert all(s["accuracy"] == s["correct"] / s["n"] for s in slices.values())
    assert read_result(out).metrics["heldout_by_selection"] == slices, "kept in the round folder's metrics"
    n_heldout, after = result.metrics["n_heldout"], result.metrics["heldout_after"]
    assert sum(expected.values()) == n_heldout, "every held-out pair is in a slice: they add up to the whole"
    assert sum(s["correct"] for s in slices.values()) / n_heldout == pytest.approx(after["accuracy"])
    margin = sum(s["margin"] * s["n"] for s in slices.values()) / n_heldout
    assert margin == pytest.approx(after["margin"], abs=1e-5)


def test_a_kto_round_records_no_slices(tiny_model_dir, tmp_path):
    config = dataclasses.replace(SMALL, loss_type="kto", max_steps=1)
    result = run_round(config, sliced_pairs(), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    assert result.metrics["heldout_after"] is not None and result.metrics["heldout_by_selection"] is None


def test_the_train_tab_reports_the_newest_round_and_all_rounds_summed(sliced_round, store):
    result, out = sliced_round
    first = store.rounds.start({}, None, "tiny")
    store.rounds.finish(first, str(out / "adapter"), read_result(out).metrics, [])
    store.rounds.fail(store.rounds.start({}, None, "tiny"), "out of memory")  # a failed round counts for nothing
    newest = {"spread": {"n": 40, "correct": 36, "margin": 0.5}, "control": {"n": 40, "correct": 20, "margin": 0.1}}
    third = store.rounds.start({}, None, "tiny")
    store.rounds.finish(third, "runs/round_003/adapter", {"heldout_by_selection": newest}, [])

    report = selection_report(store.rounds.list())
    assert report.latest == "round_003" and report.rounds == 2
    (latest,) = report.in_latest
    assert (latest.strategy.n, latest.control.n, latest.significant) == (40, 40, True)
    (summed,) = report.in_all
    slices = result.metrics["heldout_by_selection"]
    assert summed.strategy.n == 40 + slices["spread"]["n"] and summed.control.n == 40 + slices["control"]["n"]
    text = views.selection_markdown(report)
    assert text.startswith("**Pair selection against its random control**")
    assert f"- **round_003:** {latest.text}" in text and f"- **Summed over 2 rounds:** {summed.text}" in text


def test_the_train_tab_says_nothing_while_every_pair_is_random(store):
    round_id = store.rounds.start({}, None, "tiny")
    random_only = {"random": {"n": 6, "correct": 4, "accuracy": 4 / 6, "margin": 0.2}}
    store.rounds.finish(round_id, "runs/round_001/adapter", {"heldout_by_selection": random_only}, [])
    report = selection_report(store.rounds.list())
    assert report.in_latest == [] and report.in_all == [] and views.selection_markdown(report) == ""
    assert views.selection_markdown(selection_report([])) == "", "no round yet"
