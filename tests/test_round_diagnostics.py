"""A round's diagnostics (samples of the trained policy and the base on held-out prompts) and its early stops, on
the tiny llama: rounds planned from a real store and trained in their own process, or run in-process.

    python -m pytest tests/test_round_diagnostics.py -q
"""

import dataclasses
import json
import math

import pytest
from helpers import taste_pairs, vote_pairs
from transformers import AutoTokenizer

from storage import Store
from training.config import DPOConfig
from training.diagnose import lifted
from training.plan import diagnostic_prompts, plan_round
from training.runner import stop_note
from training.trainer import run_round

SMALL = DPOConfig(
    learning_rate=5e-3, epochs=3, batch_size=4, heldout_fraction=0.25, lora_r=8, lora_alpha=16, max_length=128
)
EVAL_ONLY = [f"Describe a {thing} in one sentence." for thing in ("lamp", "boat", "cloud")]


def test_a_round_records_diagnostics_of_the_policy_and_the_base(tiny_model_dir, tmp_path, train_round):
    store = Store(tmp_path / "loop.duckdb")
    vote_pairs(store, taste_pairs(8))
    store.prompts.add_many(EVAL_ONLY, source="eval", eval_only=True)
    config = dataclasses.replace(SMALL, diagnostic_prompts=2, diagnostic_tokens=12)
    finished = train_round(store, config, model=tiny_model_dir, runs_dir=tmp_path / "runs")
    found = finished.metrics["diagnostics"]
    assert found["prompts"] == 2 and found["max_new_tokens"] == 12
    for version in ("policy", "base"):
        numbers = found[version]
        assert 0 < numbers["mean_length"] <= 12, numbers
        assert numbers["distinct_2"] is None or 0 < numbers["distinct_2"] <= 1
        assert 0 <= numbers["repeated_4gram"] <= 1
    assert found["base"]["kl_per_token"] == 0.0
    assert math.isfinite(found["policy"]["kl_per_token"]) and found["policy"]["kl_per_token"] > -0.5
    assert 0 <= found["policy"]["lifted_share"] <= 1 and len(found["policy"]["lifted"]) <= 2
    assert finished.metrics["phases"]["diagnostics"] > 0
    assert finished.metrics["stopped"] == {"reason": "finished", "step": finished.metrics["train"]["step"]}
    folder = tmp_path / "runs" / finished.version
    request = json.loads((folder / "request.json").read_text())
    assert set(request["diagnostic_prompts"]) <= set(EVAL_ONLY), "eval-only prompts come first"
    samples = json.loads((folder / "diagnostics.json").read_text())
    assert samples["prompts"] == request["diagnostic_prompts"][:2] and len(samples["completions"]) == 2
    assert request["diagnose_base"] is True
    again = plan_round(store, dataclasses.replace(config, continue_from_serving=False))
    assert again.diagnose_base is False, "the base is measured once"
    store.close()


def test_lifted_shows_the_tokens_a_round_made_likely_in_their_context(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = [
        tokenizer.encode("the quiet lamp glows", add_special_tokens=False),
        tokenizer.encode("a boat", add_special_tokens=False),
    ]
    policy = [[-1.0] * len(ids[0]), [-1.0] * len(ids[1])]
    ref = [[-1.0] * len(ids[0]), [-1.0] * len(ids[1])]
    ref[0][2] = -9.0  # the third token: the base finds it unlikely, the round likely
    found = lifted(ids, policy, ref, tokenizer)
    assert found["lifted_share"] == 0.5
    (example,) = found["lifted"]
    assert example.replace(" ", "").startswith(tokenizer.decode(ids[0][:2]).replace(" ", "") + "[")
    assert f"[{tokenizer.decode(ids[0][2:3])}]" in example
    assert lifted([], [], [], tokenizer) == {"lifted_share": None, "lifted": []}


def test_diagnostic_prompts_are_held_out_and_never_the_rounds_own(store):
    vote_pairs(store, taste_pairs(6))
    store.prompts.add_many(["Name a river.", "Name a mountain."], source="test")
    plan = plan_round(store, SMALL)
    assert plan.diagnostic_prompts == ("Name a river.", "Name a mountain."), "no eval-only prompts: unlabeled ones"
    assert diagnostic_prompts(store, 100, plan.items) == plan.diagnostic_prompts
    assert plan_round(store, dataclasses.replace(SMALL, diagnostic_prompts=0)).diagnostic_prompts == ()
    store.prompts.add_many(EVAL_ONLY, source="eval", eval_only=True)
    assert set(diagnostic_prompts(store, 2, plan.items)) < set(EVAL_ONLY), "eval-only prompts first"
    assert set(diagnostic_prompts(store, 3, plan.items)) == set(EVAL_ONLY)


def test_max_steps_stops_the_round_early_and_says_so(tiny_model_dir, tmp_path):
    config = dataclasses.replace(SMALL, max_steps=2, diagnostic_prompts=0)  # 3 epochs of 2 steps: 6 planned
    result = run_round(config, taste_pairs(), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    history = result.metrics["history"]
    assert [s["step"] for s in history] == [1, 2] and history[-1]["total_steps"] == 2
    assert result.metrics["stopped"] == {"reason": "max_steps", "step": 2}
    assert result.metrics["diagnostics"] is None and "diagnostics" not in result.metrics["phases"]
    assert stop_note(result.metrics) == " Training stopped after step 2: max_steps reached."


def test_max_steps_past_the_epochs_changes_nothing(tiny_model_dir, tmp_path):
    config = dataclasses.replace(SMALL, epochs=1, max_steps=50, diagnostic_prompts=0)
    result = run_round(config, taste_pairs(), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    assert result.metrics["stopped"] == {"reason": "finished", "step": 3} and stop_note(result.metrics) == ""


def test_target_margin_stops_once_the_heldout_margin_reaches_it(tiny_model_dir, tmp_path):
    config = dataclasses.replace(SMALL, epochs=10, target_margin=0.02, eval_every=2, diagnostic_prompts=0)
    result = run_round(config, taste_pairs(), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    history, stopped = result.metrics["history"], result.metrics["stopped"]
    assert stopped["reason"] == "target_margin" and stopped["step"] == len(history) < 20, stopped
    assert stopped["step"] % 2 == 0 and history[-1]["heldout_margin"] >= 0.02
    assert all("heldout_margin" in s for s in history if s["step"] % 2 == 0)
    assert all("heldout_margin" not in s for s in history if s["step"] % 2)
    assert result.metrics["heldout_after"]["margin"] == pytest.approx(history[-1]["heldout_margin"], abs=1e-5)
    assert "the held-out margin reached target_margin" in stop_note(result.metrics)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"target_margin": 0.5, "heldout_fraction": 0.0}, "set heldout_fraction above 0.*or empty target_margin"),
        ({"target_margin": -1.0}, "target_margin must be a reward margin > 0"),
        ({"max_steps": 0}, r"max_steps must be a whole number >= 1 \(or empty"),
        ({"eval_every": 0}, "eval_every must be a whole number of steps >= 1"),
        ({"diagnostic_prompts": -1}, r"diagnostic_prompts must be a whole number from 0 \(no diagnostics\)"),
        ({"diagnostic_tokens": 0}, "diagnostic_tokens must be a whole number from 1 to 2048"),
    ],
)
def test_stop_and_diagnostic_settings_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        DPOConfig(**fields)
