"""On a CPU a round fits its training step into the memory it has before it runs: smaller micro-batches with
the same pairs per optimizer step first, then checkpointing, else a clear refusal that trains nothing."""

import json
import math

import pytest
from helpers import taste_pairs

from models import load_model, load_tokenizer
from training.config import DPOConfig
from training.data import TokenizedPair, tokenize_pair
from training.memory import GIB, MemoryPlanError, ModelShape, largest_micro_batch, plan_memory, step_bytes
from training.runner import memory_note
from training.trainer import TrainingError, run_round

SHAPE = ModelShape(layers=30, hidden=576, intermediate=1536, vocab=49152)  # SmolLM2-135M
PAIRS = [TokenizedPair([1] * (50 + 10 * i), [2] * (20 + 5 * i), [3] * (10 + i)) for i in range(16)]


def need(micro: int, checkpointing: bool) -> int:
    return step_bytes(SHAPE, *largest_micro_batch(PAIRS, micro), checkpointing=checkpointing)


def test_estimate_grows_with_the_batch_and_checkpointing_lowers_it():
    assert step_bytes(SHAPE, 8, 512, 2000, False) > step_bytes(SHAPE, 4, 512, 1000, False)
    assert step_bytes(SHAPE, 4, 1024, 2000, False) > step_bytes(SHAPE, 4, 512, 2000, False)
    assert step_bytes(SHAPE, 8, 512, 2000, True) < 0.6 * step_bytes(SHAPE, 8, 512, 2000, False)
    # Measured: 8.12 GiB for forward + backward of 4 sequences x 768 tokens on the default model with LoRA.
    assert 8.12 * GIB < step_bytes(SHAPE, 4, 768, 1536, False) < 1.5 * 8.12 * GIB


def test_largest_micro_batch_is_made_of_the_longest_pairs():
    rows, width, completions = largest_micro_batch(PAIRS, 2)
    longest = PAIRS[-1]
    assert (rows, width) == (4, len(longest.prompt_ids) + len(longest.chosen_ids))
    assert completions == sum(len(p.chosen_ids) + len(p.rejected_ids) for p in PAIRS[-2:])


def test_a_step_that_fits_keeps_the_config():
    config = DPOConfig(batch_size=4, micro_batch=4)
    plan = plan_memory(config, PAIRS, SHAPE, need(4, False))
    assert plan.config is config and not plan.changed


def test_smaller_micro_batches_come_first_then_checkpointing_with_the_same_step():
    config = DPOConfig(batch_size=4, grad_accum=2, micro_batch=4)
    plan = plan_memory(config, PAIRS, SHAPE, need(4, False) - 1)
    assert plan.changed and plan.config.micro_batch == 3 and not plan.config.gradient_checkpointing
    assert (plan.config.batch_size, plan.config.grad_accum) == (4, 2), "a step keeps its pairs"
    assert plan.to_dict()["micro_batch"] == 3 and plan.to_dict()["changed"] is True
    plan = plan_memory(config, PAIRS, SHAPE, need(1, False) - 1)
    assert plan.config.gradient_checkpointing and plan.estimated_bytes <= need(1, False) - 1
    assert plan.config.micro_batch == max(m for m in range(1, 5) if need(m, True) < need(1, False))


def test_nothing_fits_says_what_to_change():
    with pytest.raises(MemoryPlanError, match=r"Lower max length \(now 512\)"):
        plan_memory(DPOConfig(), PAIRS, SHAPE, need(1, True) - 1)


def test_bad_budget_is_refused():
    with pytest.raises(ValueError, match="memory_budget_gib must be > 0"):
        DPOConfig(memory_budget_gib=0)


TEXT_PAIRS = taste_pairs(8)


@pytest.fixture(scope="module")
def deeper_model_dir(tmp_path_factory, tokenizer_dir):
    """A tiny llama deep enough (4 layers) for checkpointing to save memory by the estimate."""
    from helpers import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("deeper-llama"), tokenizer_dir, hidden=64, layers=4)


@pytest.mark.slow
def test_a_cpu_round_over_budget_trains_with_checkpointing_and_records_it(deeper_model_dir, tmp_path):
    model_dir = str(deeper_model_dir)
    shape = ModelShape.of(load_model(model_dir, "none", "cpu"))
    config = DPOConfig(
        learning_rate=5e-3, epochs=1, batch_size=4, micro_batch=4, heldout_fraction=0.0, min_pairs=4, rpo_alpha=0.0
    )
    tokenizer = load_tokenizer(model_dir)
    tokenized = [tokenize_pair(tokenizer, p, config.max_length, config.max_prompt_length) for p in TEXT_PAIRS]
    # Just under what one pair at a time needs without checkpointing, computed as the round does.
    budget_gib = (step_bytes(shape, *largest_micro_batch(tokenized, 1), checkpointing=False) - 1) / GIB
    over = DPOConfig(**(config.to_dict() | {"memory_budget_gib": budget_gib}))
    history = []
    result = run_round(over, TEXT_PAIRS, tmp_path / "r1", model=model_dir, on_progress=history.append)
    plan = result.metrics["memory_plan"]
    assert plan["changed"] and plan["gradient_checkpointing"] and result.metrics["gradient_checkpointing"]
    assert plan["micro_batch"] < 4 and result.metrics["micro_batch"] == plan["micro_batch"]
    assert plan["estimated_gib"] <= plan["budget_gib"]
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5), "checkpointing changes no math"
    recorded = json.loads((tmp_path / "r1" / "config.json").read_text())["dpo"]
    assert recorded["gradient_checkpointing"] is True and recorded["memory_budget_gib"] == budget_gib

    roomy = run_round(config, TEXT_PAIRS, tmp_path / "r2", model=model_dir)
    assert roomy.metrics["memory_plan"]["changed"] is False and not roomy.metrics["gradient_checkpointing"]
    # What the Train tab says when the round is done.
    assert "with gradient checkpointing" in memory_note(result.metrics) and memory_note(roomy.metrics) == ""


def test_a_cpu_round_that_cannot_fit_refuses_before_training(tiny_model_dir, tmp_path):
    config = DPOConfig(epochs=1, batch_size=4, heldout_fraction=0.0, min_pairs=4, memory_budget_gib=1e-6)
    with pytest.raises(TrainingError, match="Lower max length.*previous policy keeps serving"):
        run_round(config, TEXT_PAIRS, tmp_path / "r1", model=str(tiny_model_dir))
    assert not (tmp_path / "r1").exists() and not list(tmp_path.iterdir())
