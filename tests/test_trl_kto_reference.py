"""Our KTO math against TRL's KTOTrainer on the same tiny model and unpaired rows (fp32, CPU).

TRL estimates the KL reference point from mismatched rows built by rotating the completions of each
batch by one: row k of a batch is scored with the completion of row k - 1 (row 0 with the last one). The
comparison below gives our rows exactly those partners, so every number can be matched one to one.
TRL is a test-only dependency: the runtime trainer is prefloop's own code.
"""

import inspect

import pytest
import torch
from helpers import varied_pairs

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from models import load_tokenizer  # noqa: E402
from storage.labels import PreferencePair, UnpairedExample, as_unpaired, kto_rows  # noqa: E402
from training.config import DPOConfig  # noqa: E402
from training.data import collate, tokenize_examples, tokenize_pair  # noqa: E402
from training.logps import completion_logps  # noqa: E402
from training.loss import kto_kl, kto_loss  # noqa: E402
from training.trainer import BatchLogps, train_step  # noqa: E402

PAIRS = varied_pairs()[:3]
SINGLES = [
    UnpairedExample("Say hi in French.", "hello", False, 4),
    UnpairedExample("Recommend a book.", "Books are a waste of time, watch TV instead.", False, rating_id=9),
]
BATCH = 4  # 8 rows: two batches, 👍 👎 👍 👎 then 👍 👎 👎 👎 (unbalanced, so the KL term does not cancel in the mean)
MAX_LENGTH, MAX_PROMPT_LENGTH = 512, 256


def our_examples() -> list[UnpairedExample]:
    """The same rows as `kto_rows(PAIRS, SINGLES)`, as the round builds them."""
    return as_unpaired([*PAIRS, *SINGLES])


DEFAULTS = (0.1, 1.0, 1.0)  # (beta, desirable_weight, undesirable_weight) as KTOConfig sets them by default
WEIGHTED = (0.5, 1.33, 0.75)


def build(tiny_model_dir, tmp_path, setting):
    """A LoRA policy away from its reference and a KTOTrainer on `kto_rows(PAIRS, SINGLES)` with `setting`."""
    beta, desirable_weight, undesirable_weight = setting
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    with torch.no_grad():  # move the policy away from the reference so rewards and the KL estimate are not 0
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    args = trl.KTOConfig(
        output_dir=str(tmp_path),
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        per_device_train_batch_size=BATCH,
        max_length=MAX_LENGTH,
        report_to=[],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
    )
    rows = kto_rows(PAIRS, SINGLES)  # the format prefloop exports
    trainer = trl.KTOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    # TRL keeps a copy of a pre-trained adapter as the reference; prefloop's reference is the base model, so
    # drop that copy and TRL falls back to the base with the adapter disabled, like ours.
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    model.set_adapter("default")
    model.train()
    batches = list(trainer.get_train_dataloader())  # sequential: rows 0-3, then rows 4-7
    assert [len(b["label"]) for b in batches] == [BATCH, BATCH]
    return tokenizer, model, trainer, batches, setting


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    return build(tiny_model_dir, tmp_path_factory.mktemp("trl-kto"), DEFAULTS)


@pytest.fixture(scope="module")
def weighted_setup(tiny_model_dir, tmp_path_factory):
    return build(tiny_model_dir, tmp_path_factory.mktemp("trl-kto-weighted"), WEIGHTED)


def test_kto_defaults_match_trl(tmp_path):
    """KTOConfig's default beta and weights; kto_loss weighs 👍 and 👎 rows alike by default, as TRL does."""
    args = trl.KTOConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    assert (args.beta, args.desirable_weight, args.undesirable_weight, args.loss_type) == (*DEFAULTS, "kto")
    defaults = inspect.signature(kto_loss).parameters
    assert (defaults["desirable_weight"].default, defaults["undesirable_weight"].default) == DEFAULTS[1:]


def trl_partner(k: int) -> int:
    """Row whose completion TRL scores against row k's prompt for the KL estimate (rotation within a batch)."""
    start = k - k % BATCH
    return start + (k - 1) % BATCH


def our_batch(tokenizer, b: int):
    """Rows of batch b in our pair layout, with TRL's KL partners as the mismatched ("rejected") completions."""
    examples = our_examples()
    idx = range(b * BATCH, (b + 1) * BATCH)
    rows = [
        tokenize_pair(
            tokenizer,
            PreferencePair(examples[k].prompt, examples[k].completion, examples[trl_partner(k)].completion),
            MAX_LENGTH,
            MAX_PROMPT_LENGTH,
        )
        for k in idx
    ]
    desirable = torch.tensor([examples[k].desirable for k in idx])
    return rows, desirable


def our_logps(model, tokenizer, b: int):
    """(policy, policy_kl, ref, ref_kl, desirable) for batch b, the policy's in one forward with gradients;
    kto_kl keeps the KL estimate out of back-propagation."""
    rows, desirable = our_batch(tokenizer, b)
    batch = collate(rows, tokenizer.pad_token_id)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    with torch.no_grad(), model.disable_adapter():
        ref, ref_kl = completion_logps(model, *inputs).chunk(2)
    policy, policy_kl = completion_logps(model, *inputs).chunk(2)
    return policy, policy_kl, ref, ref_kl, desirable


def our_losses(model, tokenizer, b: int, setting):
    beta, desirable_weight, undesirable_weight = setting
    policy, policy_kl, ref, ref_kl, desirable = our_logps(model, tokenizer, b)
    kl = kto_kl(policy_kl, ref_kl)
    return (*kto_loss(policy, ref, desirable, kl, beta, desirable_weight, undesirable_weight), kl)


def trl_policy_logps(model, batch) -> torch.Tensor:
    """Completion log-probs through TRL's fused LM head, as KTOTrainer's loss computes them."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True)
    return out.log_probs[:, -(batch["input_ids"].size(1) - 1) :].sum(-1)


def test_rows_and_kl_partners_match_trl(setup):
    """Same prompts, completions and labels in the same order; our rows carry TRL's mismatched completions."""
    tokenizer, _, trainer, batches, _ = setup
    examples = our_examples()
    data = trainer.train_dataset
    assert [e.desirable for e in examples] == data["label"]
    for b, batch in enumerate(batches):
        rows, desirable = our_batch(tokenizer, b)
        assert desirable.tolist() == batch["label"].tolist()
        for i, row in enumerate(rows):
            theirs = data[b * BATCH + i]
            assert row.prompt_ids == theirs["prompt_ids"]
            assert row.chosen_ids == theirs["completion_ids"]
            assert row.rejected_ids == theirs["KL_completion_ids"]
            assert theirs["KL_completion_ids"] == data[trl_partner(b * BATCH + i)]["completion_ids"]


def test_sequence_logps_match_trl(setup):
    """Policy and reference log-probs of the completions and of the KL completions, row by row."""
    tokenizer, model, trainer, batches, _ = setup
    for b, batch in enumerate(batches):
        with torch.no_grad():
            policy, policy_kl, ref, ref_kl, _ = our_logps(model, tokenizer, b)
            their_policy = trl_policy_logps(model, batch)
            their_policy_kl = trainer._compute_kl_logps(model, batch)
            their_ref, their_ref_kl = trainer.compute_ref_log_probs(model, batch)
        torch.testing.assert_close(policy, their_policy, atol=1e-4, rtol=0)
        torch.testing.assert_close(policy_kl, their_policy_kl, atol=1e-4, rtol=0)
        torch.testing.assert_close(ref, their_ref, atol=1e-4, rtol=0)
        torch.testing.assert_close(ref_kl, their_ref_kl, atol=1e-4, rtol=0)
        assert (policy - ref).abs().max() > 0.05, "the test needs a policy that differs from the reference"


@pytest.mark.parametrize("which", ["setup", pytest.param("weighted_setup", marks=pytest.mark.slow)])
def test_kl_rewards_and_per_example_losses_match_trl(which, request):
    """KL estimate, mean rewards of 👍 and 👎 rows, every row's loss and the batch mean."""
    tokenizer, model, trainer, batches, setting = request.getfixturevalue(which)
    _, desirable_weight, undesirable_weight = setting
    for b, batch in enumerate(batches):
        with torch.no_grad():
            losses, rewards, kl = our_losses(model, tokenizer, b, setting)
            trainer._metrics["train"].clear()
            mean = trainer.compute_loss(model, batch).item()
        logged = trainer._metrics["train"]
        desirable = batch["label"].bool()
        assert kl.item() > 0.01, "the test needs a positive KL estimate (not clamped to 0)"
        assert kl.item() == pytest.approx(logged["kl"][-1], abs=1e-4)
        assert rewards[desirable].mean().item() == pytest.approx(logged["rewards/chosen"][-1], abs=1e-4)
        assert rewards[~desirable].mean().item() == pytest.approx(logged["rewards/rejected"][-1], abs=1e-4)
        assert losses.mean().item() == pytest.approx(mean, abs=1e-4)
        # TRL averages cat(desirable_weight · 👍 losses, undesirable_weight · 👎 losses) over the batch. A one-hot
        # weight vector over one group (and 0 for the other) makes that average one row's weighted loss / batch size.
        their_losses = torch.empty(len(desirable))
        try:
            for row in range(len(desirable)):
                group = desirable if desirable[row] else ~desirable
                one_hot = torch.zeros(int(group.sum()))
                one_hot[int(group[:row].sum())] = desirable_weight if desirable[row] else undesirable_weight
                trainer.desirable_weight = one_hot if desirable[row] else 0.0
                trainer.undesirable_weight = 0.0 if desirable[row] else one_hot
                with torch.no_grad():
                    their_losses[row] = trainer.compute_loss(model, batch).item() * len(desirable)
        finally:
            trainer.desirable_weight, trainer.undesirable_weight = desirable_weight, undesirable_weight
        torch.testing.assert_close(losses, their_losses, atol=1e-4, rtol=0)
        assert (losses - 0.5 * torch.where(desirable, desirable_weight, undesirable_weight)).abs().max() > 1e-3, (
            "the test needs losses away from their value at policy = reference"
        )


def lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("which", ["setup", pytest.param("weighted_setup", marks=pytest.mark.slow)])
def test_lora_gradients_of_the_mean_loss_match_trl(which, request):
    tokenizer, model, trainer, batches, setting = request.getfixturevalue(which)
    for b, batch in enumerate(batches):
        model.zero_grad()
        losses, _, _ = our_losses(model, tokenizer, b, setting)
        losses.mean().backward()
        ours = lora_grads(model)
        model.zero_grad()
        their_mean = trainer.compute_loss(model, batch)
        their_mean.backward()
        theirs = lora_grads(model)
        model.zero_grad()
        assert losses.mean().item() == pytest.approx(their_mean.item(), abs=1e-4)
        assert max(g.abs().max().item() for g in ours.values()) > 1e-4, "the test needs non-zero gradients"
        for name, grad in ours.items():
            torch.testing.assert_close(grad, theirs[name], atol=1e-4, rtol=1e-3)


def test_a_round_step_matches_trl(setup):
    """The round's KTO step (reference log-probs once, then forward / backward over a step's rows) gives TRL's
    mean loss and LoRA gradients, batch by batch, when its rows carry TRL's KL partners."""
    tokenizer, model, trainer, batches, (beta, _, _) = setup
    config = DPOConfig(loss_type="kto", beta=beta, batch_size=BATCH, grad_accum=1, max_length=MAX_LENGTH)
    rows = [row for b in range(len(batches)) for row in our_batch(tokenizer, b)[0]]
    desirable = torch.tensor([e.desirable for e in our_examples()])
    batch_logps = BatchLogps(model, tokenizer.pad_token_id, "cpu", config.batch_size)
    with model.disable_adapter():
        ref_logps = (*batch_logps(rows), desirable)
    for b, batch in enumerate(batches):
        model.zero_grad()
        stats = train_step(model, rows, ref_logps, list(range(b * BATCH, (b + 1) * BATCH)), config, batch_logps, None)
        ours = lora_grads(model)
        model.zero_grad()
        theirs = trainer.compute_loss(model, batch)
        theirs.backward()
        their_grads = lora_grads(model)
        model.zero_grad()
        assert stats["loss"] == pytest.approx(theirs.item(), abs=1e-4)
        for name, grad in ours.items():
            torch.testing.assert_close(grad, their_grads[name], atol=1e-4, rtol=1e-3)


def test_our_kl_partners_are_other_examples_completions(setup):
    """tokenize_examples scores each row's prompt with another example's completion: a seeded derangement over
    all rows, where TRL rotates completions within each batch."""
    tokenizer, _, trainer, _, _ = setup
    completions = trainer.train_dataset["completion_ids"]
    rows = tokenize_examples(tokenizer, our_examples(), MAX_LENGTH, MAX_PROMPT_LENGTH, seed=0)
    partners = [completions.index(row.rejected_ids) for row in rows]
    assert [row.chosen_ids for row in rows] == completions
    assert sorted(partners) == list(range(len(rows)))
    assert all(partner != k for k, partner in enumerate(partners))
