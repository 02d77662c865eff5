"""Our DPO math against TRL's DPOTrainer on the same tiny model and batch (fp32, CPU).

TRL is a test-only dependency: the runtime trainer is prefloop's own code.
"""

import pytest
import torch
from helpers import varied_pairs

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from models import load_tokenizer  # noqa: E402
from storage.labels import trl_rows  # noqa: E402
from training.data import collate, tokenize_pair  # noqa: E402
from training.logps import completion_logps  # noqa: E402
from training.loss import dpo_loss  # noqa: E402

PAIRS = varied_pairs()
BETA = 0.1


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    with torch.no_grad():  # move the policy away from the reference so the loss is not trivially ln 2
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    rows = trl_rows(PAIRS)  # the format prefloop exports
    args = trl.DPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        beta=BETA,
        per_device_train_batch_size=4,
        max_length=512,
        report_to=[],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
    )
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    # TRL keeps a copy of a pre-trained adapter as the reference; prefloop's reference is the base model, so
    # drop that copy and TRL falls back to the base with the adapter disabled, like ours.
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    model.set_adapter("default")
    return tokenizer, model, trainer


def test_tokenization_matches_trl(setup):
    tokenizer, _, trainer = setup
    for ours, theirs in zip(PAIRS, trainer.train_dataset, strict=True):
        tok = tokenize_pair(tokenizer, ours, max_length=512, max_prompt_length=256)
        assert tok.prompt_ids == theirs["prompt_ids"]
        assert tok.chosen_ids == theirs["chosen_ids"]
        assert tok.rejected_ids == theirs["rejected_ids"]


def our_loss(tokenizer, model):
    batch = collate([tokenize_pair(tokenizer, p, 512, 256) for p in PAIRS], tokenizer.pad_token_id)
    with torch.no_grad(), model.disable_adapter():
        ref = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    policy = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    losses, _, _ = dpo_loss(*policy.chunk(2), *ref.chunk(2), beta=BETA)
    return losses.mean()


def our_sequence_logps(tokenizer, model):
    """(policy_chosen, policy_rejected, ref_chosen, ref_rejected) log-probs, each (len(PAIRS),)."""
    batch = collate([tokenize_pair(tokenizer, p, 512, 256) for p in PAIRS], tokenizer.pad_token_id)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    with torch.no_grad():
        with model.disable_adapter():
            ref = completion_logps(model, *inputs)
        policy = completion_logps(model, *inputs)
    return (*policy.chunk(2), *ref.chunk(2))


def trl_policy_logps(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected log-probs as DPOTrainer's loss computes them: its fused LM head over the batch of
    [chosen rows, rejected rows], summed over completion tokens."""
    labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
    out = model(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels, fused_lm_head=True
    )
    return out.log_probs[:, -(inputs["input_ids"].size(1) - 1) :].sum(-1).chunk(2)


def test_sequence_logps_match_trl(setup):
    """Policy and reference log-probs of every chosen and rejected completion, pair by pair."""
    tokenizer, model, trainer = setup
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = our_sequence_logps(tokenizer, model)
    with torch.no_grad():
        their_chosen, their_rejected = trl_policy_logps(model, inputs)
        their_ref_chosen, their_ref_rejected = trainer.compute_ref_log_probs(model, inputs)
        trainer._metrics["train"].clear()
        trainer.compute_loss(model, inputs)
    for ours, theirs in (
        (policy_chosen, their_chosen),
        (policy_rejected, their_rejected),
        (ref_chosen, their_ref_chosen),
        (ref_rejected, their_ref_rejected),
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    # The loss itself logs the mean policy log-probs it used: the rows above are the ones it trains on.
    logged = trainer._metrics["train"]
    assert policy_chosen.mean().item() == pytest.approx(logged["logps/chosen"][-1], abs=1e-4)
    assert policy_rejected.mean().item() == pytest.approx(logged["logps/rejected"][-1], abs=1e-4)
    assert (policy_chosen - ref_chosen).abs().max() > 0.05, "the test needs a policy that differs from the reference"


def lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_loss_and_lora_gradients_match_trl(setup):
    tokenizer, model, trainer = setup
    model.zero_grad()
    ours = our_loss(tokenizer, model)
    ours.backward()
    our_grads = lora_grads(model)
    model.zero_grad()
    inputs = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    theirs = trainer.compute_loss(model, inputs)
    theirs.backward()
    their_grads = lora_grads(model)
    assert abs(ours.item() - 0.6931) > 1e-3, "the test needs a policy that differs from the reference"
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-4)
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, their_grads[name], atol=1e-4, rtol=1e-3)


def test_sequence_logps_match_a_full_vocab_reference(setup):
    """Selecting completion positions before the LM head gives the same sums as the naive full softmax."""
    tokenizer, model, _ = setup
    batch = collate([tokenize_pair(tokenizer, p, 512, 256) for p in PAIRS], tokenizer.pad_token_id)
    with torch.no_grad():
        ours = completion_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], chunk_size=7
        )
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        per_token = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
        naive = (per_token * batch["completion_mask"][:, 1:]).sum(-1)
    torch.testing.assert_close(ours, naive, atol=1e-5, rtol=1e-5)
