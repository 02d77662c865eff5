"""A real DPO round on a tiny llama: ln 2 at the start, held-out margin up, only LoRA weights move."""

import dataclasses
import json
import math
import random
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from helpers import TOPICS, taste_pairs
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from models import load_tokenizer
from storage.labels import PreferencePair, UnpairedExample, as_unpaired
from training.config import DPOConfig
from training.data import collate, split_heldout, step_batches, tokenize_pair
from training.runner import memory_note
from training.trainer import RoundResult, TrainingError, run_round

CONFIG = DPOConfig(
    learning_rate=5e-3, epochs=3, batch_size=4, heldout_fraction=0.25, min_pairs=4, seed=0, rpo_alpha=0.0
)  # plain DPO


class FinishedRound(NamedTuple):
    result: RoundResult
    history: list[dict]
    out: Path
    loaded: list  # (each base model the round loaded, a copy of its state_dict as loaded)


@pytest.fixture(scope="module")
def finished_round(tiny_model_dir, tmp_path_factory):
    """One round run in-process, keeping each base model it loads and a copy of its weights as loaded, so tests
    see what training did to the very model it trained."""
    import training.trainer as trainer

    history, loaded = [], []
    real_load = trainer.load_model

    def load_and_keep(*args, **kwargs):
        model = real_load(*args, **kwargs)
        loaded.append((model, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return model

    out = tmp_path_factory.mktemp("runs") / "round_001"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "load_model", load_and_keep)
        result = run_round(
            CONFIG, taste_pairs(), out, model=str(tiny_model_dir), device="cpu", on_progress=history.append
        )
    return FinishedRound(result, history, out, loaded)


def test_first_step_loss_is_ln2(finished_round):
    history = finished_round.history
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_heldout_reward_margin_rises(finished_round):
    result = finished_round.result
    before, after = result.metrics["heldout_before"], result.metrics["heldout_after"]
    assert before["margin"] == pytest.approx(0.0, abs=1e-6)
    assert after["margin"] > before["margin"] + 0.05
    assert after["accuracy"] == 1.0


def test_only_lora_weights_change(finished_round):
    """The base the round trained (LoRA layers now inside it) keeps every weight it was loaded with; every LoRA B,
    which starts at zero, moved, and the saved adapter is the trained one."""
    assert len(finished_round.loaded) == 1, "one base model per round"
    model, as_loaded = finished_round.loaded[0]
    after = model.state_dict()
    base = {name.replace(".base_layer", ""): t for name, t in after.items() if "lora_" not in name}
    assert base.keys() == as_loaded.keys()
    for name, tensor in base.items():
        assert torch.equal(tensor, as_loaded[name]), f"base weight {name} changed in training"
    lora_b = {name: t for name, t in after.items() if "lora_B" in name}
    assert lora_b, "the round attached no LoRA"
    for name, tensor in lora_b.items():
        assert tensor.abs().sum() > 0, f"{name} starts at zero and must have moved"
    saved = load_file(finished_round.result.adapter_dir / "adapter_model.safetensors")
    assert len(saved) == len(lora_b) + len([n for n in after if "lora_A" in n])
    for name, tensor in saved.items():
        assert torch.equal(
            tensor, after[name.removeprefix("base_model.model.").replace(".weight", ".default.weight")]
        ), name


def test_round_folder_records_lineage(finished_round):
    history, out = finished_round.history, finished_round.out
    record = json.loads((out / "config.json").read_text())
    assert record["dpo"]["learning_rate"] == CONFIG.learning_rate and record["parent_adapter"] is None
    ids = json.loads((out / "judgements.json").read_text())
    assert sorted(ids["train"] + ids["heldout"]) == list(range(12)) and len(ids["heldout"]) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == len(history) == 3 * math.ceil(9 / 4)
    assert metrics["oom_retry"] is False
    assert not list(out.parent.glob(".*tmp*")), "no temporary folder is left behind"


def continue_round(parent_adapter, model_dir, out, reference: str):
    """One epoch continuing `parent_adapter`; returns (result, per-step history)."""
    history = []
    config = DPOConfig(
        learning_rate=5e-3,
        epochs=1,
        batch_size=4,
        heldout_fraction=0.25,
        min_pairs=4,
        reference=reference,
        rpo_alpha=0.0,
    )
    result = run_round(
        config,
        taste_pairs(),
        out,
        model=str(model_dir),
        device="cpu",
        parent_adapter=str(parent_adapter),
        on_progress=history.append,
    )
    return result, history


@pytest.mark.slow
def test_continuing_a_round_starts_from_the_parent_adapter(finished_round, tiny_model_dir, tmp_path):
    child, history = continue_round(finished_round.result.adapter_dir, tiny_model_dir, tmp_path / "round_002", "base")
    # The reference is the base, so a continued policy already prefers the chosen answers at step 1.
    assert history[0]["loss"] < math.log(2) - 0.05
    assert child.metrics["heldout_before"]["margin"] > 0.05


@pytest.mark.slow
def test_previous_policy_as_reference_starts_a_continued_round_at_ln2(finished_round, tiny_model_dir, tmp_path):
    child, history = continue_round(
        finished_round.result.adapter_dir, tiny_model_dir, tmp_path / "round_002", "previous"
    )
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert child.metrics["heldout_before"]["margin"] == pytest.approx(0.0, abs=1e-6)
    assert json.loads((tmp_path / "round_002" / "config.json").read_text())["dpo"]["reference"] == "previous"


def test_too_few_pairs_is_a_clear_error_and_writes_nothing(tiny_model_dir, tmp_path):
    with pytest.raises(TrainingError, match="Too few new preference pairs.*Label more pairs"):
        run_round(CONFIG, taste_pairs(3), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    assert not (tmp_path / "round_001").exists()


@pytest.mark.parametrize(("after_checks", "steps_done"), [(0, 0), (6, 1)])
def test_cancel_stops_the_round_and_leaves_no_adapter(tiny_model_dir, tmp_path, after_checks, steps_done):
    """Cancel during the reference pass, or in training after one step (9 training pairs, 3 held out, micro-batch 4:
    5 micro-batches of log-probs before training, then one per step); both stop at the next micro-batch."""
    from training.trainer import RoundCancelled

    checks, progress = [], []

    def should_stop() -> bool:
        checks.append(1)
        return len(checks) > after_checks

    with pytest.raises(RoundCancelled):
        run_round(
            dataclasses.replace(CONFIG, micro_batch=4),
            taste_pairs(),
            tmp_path / "round_001",
            model=str(tiny_model_dir),
            device="cpu",
            should_stop=should_stop,
            on_progress=progress.append,
        )
    assert len(checks) == after_checks + 1 and len(progress) == steps_done
    assert list(tmp_path.iterdir()) == []


def test_nan_loss_stops_the_round(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    model.save_pretrained(broken)
    load_tokenizer(str(tiny_model_dir)).save_pretrained(broken)
    with pytest.raises(TrainingError, match="NaN or infinite.*previous policy keeps serving"):
        run_round(CONFIG, taste_pairs(), tmp_path / "round_001", model=str(broken), device="cpu")
    assert not (tmp_path / "round_001").exists()


def test_non_finite_weights_after_the_last_step_stop_the_round(tiny_model_dir, tmp_path, monkeypatch):
    """An overflowing gradient in the last step (every loss finite): clipping makes it NaN, the optimizer writes it
    into a LoRA weight, and the round stops before scoring or saving that adapter."""
    import training.trainer as round_module

    progress = []
    real_policy = round_module._policy_with_adapter

    def policy_whose_last_gradient_overflows(*args, **kwargs):
        policy = real_policy(*args, **kwargs)
        lora_b = next(p for n, p in policy.named_parameters() if "lora_B" in n)
        lora_b.register_hook(lambda grad: torch.full_like(grad, math.inf) if len(progress) == 2 else grad)
        return policy

    monkeypatch.setattr(round_module, "_policy_with_adapter", policy_whose_last_gradient_overflows)
    config = dataclasses.replace(CONFIG, epochs=1)  # 9 training pairs in steps of 4: 3 steps
    with pytest.raises(TrainingError, match="LoRA weights became NaN or infinite.*previous policy keeps serving"):
        run_round(
            config,
            taste_pairs(),
            tmp_path / "round_001",
            model=str(tiny_model_dir),
            device="cpu",
            on_progress=progress.append,
        )
    assert [s["step"] for s in progress] == [1, 2, 3] and all(math.isfinite(s["loss"]) for s in progress)
    assert list(tmp_path.iterdir()) == []


def test_long_pairs_keep_the_prompts_end_and_the_completions_start(tiny_model_dir):
    """Over max_length, the prompt keeps its last max_prompt_length tokens (the turn being answered and the
    assistant header), and each completion its first tokens, so every pair keeps completion tokens to train on."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    words = " ".join(f"word{i}" for i in range(300))
    pair = PreferencePair(f"{words} Now answer: what is two plus two?", f"Four. {words}", f"Five. {words}")
    tok = tokenize_pair(tokenizer, pair, max_length=96, max_prompt_length=32)
    full = tokenize_pair(tokenizer, pair, max_length=10_000, max_prompt_length=5_000)
    assert tok.prompt_ids == full.prompt_ids[-32:]
    assert tokenizer.decode(tok.prompt_ids).endswith("what is two plus two?<|im_end|>\n<|im_start|>assistant\n")
    assert tok.chosen_ids == full.chosen_ids[:64] and tok.rejected_ids == full.rejected_ids[:64]


def test_completion_mask_covers_only_the_assistant_turn(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    pair = taste_pairs(1)[0]
    tok = tokenize_pair(tokenizer, pair, max_length=256, max_prompt_length=128)
    assert tokenizer.decode(tok.chosen_ids).startswith(pair.chosen)
    assert tok.chosen_ids[-2:] == tokenizer("<|im_end|>\n", add_special_tokens=False)["input_ids"]
    batch = collate([tok], tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2
    assert batch["completion_mask"][0].sum() == len(tok.chosen_ids)
    assert batch["completion_mask"][1].sum() == len(tok.rejected_ids)


def test_heldout_split_is_seeded_and_leaves_pairs_to_train():
    pairs = taste_pairs()
    assert split_heldout(pairs, 0.25, seed=1) == split_heldout(pairs, 0.25, seed=1)
    train, heldout = split_heldout(pairs[:1], 0.5, seed=0)
    assert len(train) == 1 and heldout == []


def test_heldout_split_keeps_a_judgements_kto_examples_together():
    """A pair gives KTO a 👍 and a 👎: both are held out or both train, never one of each."""
    pairs = [PreferencePair(f"Prompt {i}?", f"Good answer {i}.", f"Bad {i}.", judgement_id=i) for i in range(20)]
    examples = as_unpaired(pairs)
    for seed in range(5):
        train, heldout = split_heldout(examples, 0.2, seed)
        assert len(heldout) == 8 and len(train) == 32
        held = {e.judgement_id for e in heldout}
        assert held.isdisjoint(e.judgement_id for e in train)
    ratings = [UnpairedExample(f"Prompt {i}?", "Hm.", i % 2 == 0, rating_id=i) for i in range(10)]
    train, heldout = split_heldout(ratings, 0.2, seed=0)
    assert len(heldout) == 2 and len(train) == 8, "single ratings split one by one"


@pytest.mark.parametrize("group", [True, False])
def test_each_epoch_is_every_pair_once_in_full_steps(group):
    rng = random.Random(0)
    lengths = [rng.randint(20, 700) for _ in range(203)]
    steps = step_batches(lengths, 8, random.Random(1), group_by_length=group, group_steps=4)
    assert sorted(i for step in steps for i in step) == list(range(203))
    assert sorted(len(step) for step in steps)[1:] == [8] * 25, "only one step may be short"
    assert steps == step_batches(lengths, 8, random.Random(1), group_by_length=group, group_steps=4), "seeded"


def test_grouping_by_length_cuts_padding_and_puts_the_longest_step_first():
    rng = random.Random(0)
    lengths = [rng.randint(20, 700) for _ in range(256)]

    def padded_tokens(steps):
        return sum(len(step) * max(lengths[i] for i in step) for step in steps)

    grouped = step_batches(lengths, 8, random.Random(1), group_by_length=True)
    shuffled = step_batches(lengths, 8, random.Random(1), group_by_length=False)
    assert padded_tokens(grouped) < 0.75 * padded_tokens(shuffled)
    assert max(lengths[i] for i in grouped[0]) == max(lengths)
    starts = [min(step) for step in grouped[1:]]
    assert starts != sorted(starts) and starts != sorted(starts, reverse=True), "steps come in random order"


@pytest.mark.slow
def test_out_of_memory_retries_once_with_half_the_micro_batch(tiny_model_dir, tmp_path, monkeypatch):
    """A training forward of more than 2 sequences runs out of memory; the retry (1 pair = 2 rows) fits."""
    import training.trainer as round_module

    real_load = round_module.load_model

    def load_with_small_memory(*args, **kwargs):
        model = real_load(*args, **kwargs)

        def check(module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if torch.is_grad_enabled() and input_ids is not None and input_ids.shape[0] > 2:
                raise torch.OutOfMemoryError("simulated: not enough memory for this micro-batch")

        model.get_decoder().register_forward_pre_hook(check, with_kwargs=True)
        return model

    monkeypatch.setattr(round_module, "load_model", load_with_small_memory)
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=2, micro_batch=2, heldout_fraction=0.25, min_pairs=4)
    result = run_round(config, taste_pairs(), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    assert result.metrics["micro_batch"] == 1 and result.metrics["gradient_checkpointing"] is True
    assert result.metrics["oom_retry"] is True
    assert "ran out of GPU memory once and trained again from the start with 1 pair(s)" in memory_note(result.metrics)
    recorded = json.loads((tmp_path / "round_001" / "config.json").read_text())["dpo"]
    assert (recorded["micro_batch"], recorded["batch_size"], recorded["grad_accum"]) == (1, 2, 1)

    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, micro_batch=4, heldout_fraction=0.25, min_pairs=4)
    monkeypatch.setattr(round_module, "_free_accelerator_memory", lambda: None)
    with pytest.raises(TrainingError, match="Out of memory even with a micro-batch of 2"):
        run_round(config, taste_pairs(), tmp_path / "round_002", model=str(tiny_model_dir), device="cpu")
    assert not (tmp_path / "round_002").exists()


@pytest.mark.slow
def test_passes_without_gradients_halve_their_micro_batch_when_out_of_memory(tiny_model_dir, tmp_path, monkeypatch):
    """Reference and held-out passes of more than 2 sequences run out of memory: they go on 1 pair at a time,
    and give the log-probs they would have given; with no room even for that, the round fails saying so."""
    import training.trainer as round_module

    real_load = round_module.load_model
    limit = {"rows": 2}

    def load_with_small_memory(*args, **kwargs):
        model = real_load(*args, **kwargs)

        def check(module, args, kwargs):
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            if not torch.is_grad_enabled() and input_ids is not None and input_ids.shape[0] > limit["rows"]:
                raise torch.OutOfMemoryError("simulated: not enough memory for this micro-batch")

        model.get_decoder().register_forward_pre_hook(check, with_kwargs=True)
        return model

    config = DPOConfig(
        learning_rate=5e-3,
        epochs=1,
        batch_size=4,
        micro_batch=4,
        heldout_fraction=0.25,
        min_pairs=4,
        compute_dtype="float32",  # so that padding 1 or 4 pairs together gives the same numbers
    )
    expected = run_round(config, taste_pairs(), tmp_path / "roomy", model=str(tiny_model_dir), device="cpu")
    monkeypatch.setattr(round_module, "load_model", load_with_small_memory)
    result = run_round(config, taste_pairs(), tmp_path / "round_001", model=str(tiny_model_dir), device="cpu")
    assert result.metrics["heldout_before"] == pytest.approx(expected.metrics["heldout_before"], abs=1e-4)
    assert result.metrics["heldout_after"] == pytest.approx(expected.metrics["heldout_after"], abs=1e-4)
    assert result.metrics["micro_batch"] == 4 and result.metrics["oom_retry"] is False, "training kept its batch"

    limit["rows"] = 0
    with pytest.raises(TrainingError, match="Out of memory computing log-probs one pair at a time"):
        run_round(config, taste_pairs(), tmp_path / "round_002", model=str(tiny_model_dir), device="cpu")
    assert not (tmp_path / "round_002").exists()


def random_lora_policy(tiny_model_dir):
    """The tiny llama with a rank-4 LoRA whose B matrices are random, so the policy differs from the base."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    policy = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.3)
    return policy


def test_gradient_accumulation_8x1_equals_1x8(tiny_model_dir):
    from training.trainer import BatchLogps, train_step

    tokenizer = load_tokenizer(str(tiny_model_dir))
    policy = random_lora_policy(tiny_model_dir)
    items = [tokenize_pair(tokenizer, p, 256, 128) for p in taste_pairs(8)]
    with torch.no_grad(), policy.disable_adapter():
        ref = BatchLogps(policy, tokenizer.pad_token_id, "cpu", 8)(items)
    grads = []
    for batch_size, accum in ((8, 1), (1, 8)):
        policy.zero_grad()
        config = DPOConfig(batch_size=batch_size, grad_accum=accum, micro_batch=batch_size)
        train_step(
            policy,
            items,
            (*ref, None),
            list(range(8)),
            config,
            BatchLogps(policy, tokenizer.pad_token_id, "cpu", batch_size),
            None,
        )
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-6, rtol=1e-4)


def test_kto_step_is_the_same_for_any_micro_batch(tiny_model_dir):
    """The KL reference point is estimated over the whole step, so one example per pass gives the loss and LoRA
    gradients of one pass over all eight."""
    from storage.labels import as_unpaired
    from training.data import tokenize_examples
    from training.trainer import BatchLogps, train_step

    tokenizer = load_tokenizer(str(tiny_model_dir))
    policy = random_lora_policy(tiny_model_dir)
    examples = as_unpaired(taste_pairs(4))
    items = tokenize_examples(tokenizer, examples, 256, 128, seed=0)
    desirable = torch.tensor([e.desirable for e in examples])
    with torch.no_grad(), policy.disable_adapter():
        ref_logps, ref_kl_logps = BatchLogps(policy, tokenizer.pad_token_id, "cpu", 8)(items)
    # A random adapter lowers every log-prob, which would clamp any KL estimate to 0: shift the mismatched rows'
    # reference so their log-ratios spread around a positive mean, and each row alone would give another estimate.
    ref = (ref_logps, ref_kl_logps - torch.linspace(0.0, 1.0, 8))
    losses, grads = [], []
    for micro in (8, 1):
        policy.zero_grad()
        config = DPOConfig(loss_type="kto", beta=1.0, batch_size=8, micro_batch=micro)
        batch_logps = BatchLogps(policy, tokenizer.pad_token_id, "cpu", micro)
        losses.append(train_step(policy, items, (*ref, desirable), list(range(8)), config, batch_logps, None)["loss"])
        grads.append({n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad})
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert abs(losses[0] - 0.5) > 1e-3, "the test needs a policy that differs from the reference"
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_kto_round_learns_from_pairs_and_both_bad_votes(tiny_model_dir, tmp_path):
    from storage.labels import UnpairedExample

    both_bad = [UnpairedExample(f"Tell me about {t}.", "Whatever.", False, 100 + i) for i, t in enumerate(TOPICS[:4])]
    history = []
    config = DPOConfig(loss_type="kto", learning_rate=5e-3, epochs=3, batch_size=4, heldout_fraction=0.25, min_pairs=4)
    result = run_round(
        config,
        taste_pairs(8) + both_bad,
        tmp_path / "round_001",
        model=str(tiny_model_dir),
        device="cpu",
        on_progress=history.append,
    )
    assert history[0]["loss"] == pytest.approx(0.5, abs=1e-6), "policy = reference: every KTO loss is 1/2"
    last_epoch = [s["loss"] for s in history if s["epoch"] == config.epochs]
    assert sum(last_epoch) / len(last_epoch) < history[0]["loss"] - 0.01
    after = result.metrics["heldout_after"]
    assert after["accuracy"] > 0.5 and after["margin"] > result.metrics["heldout_before"]["margin"]
    ids = json.loads((tmp_path / "round_001" / "judgements.json").read_text())
    assert set(ids["train"] + ids["heldout"]) == set(range(8)) | {100, 101, 102, 103}


def test_rpo_adds_the_chosen_answers_nll_per_token_to_the_first_loss(tiny_model_dir, tmp_path):
    pairs = taste_pairs(4)
    config = DPOConfig(learning_rate=5e-3, epochs=1, batch_size=4, heldout_fraction=0.0, min_pairs=4, rpo_alpha=0.5)
    history = []
    run_round(config, pairs, tmp_path / "r", model=str(tiny_model_dir), device="cpu", on_progress=history.append)
    # At the first step the policy is the base (a fresh adapter adds nothing), so its chosen answers' NLL per
    # token is the base's.
    from models import load_model
    from training.logps import completion_logps

    tokenizer, base = load_tokenizer(str(tiny_model_dir)), load_model(str(tiny_model_dir), "none", "cpu")
    tokenized = [tokenize_pair(tokenizer, p, config.max_length, config.max_prompt_length) for p in pairs]
    batch = collate(tokenized, tokenizer.pad_token_id, ("chosen",))
    with torch.no_grad():
        logps = completion_logps(base, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    nll_per_token = (-logps / batch["completion_mask"].sum(dim=1)).mean().item()
    assert history[0]["loss"] == pytest.approx(math.log(2) + 0.5 * nll_per_token, abs=1e-4)
    with pytest.raises(ValueError, match="rpo_alpha must be >= 0"):
        DPOConfig(rpo_alpha=-1)
