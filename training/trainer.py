"""One DPO round: preference pairs in, a LoRA adapter with its lineage out.

    result = run_round(DPOConfig(), pairs, Path("runs/round_001"), model="data/models/SmolLM2-135M-Instruct")

The reference policy is the base model with the adapter switched off (no second copy of the weights);
its log-probs are computed once, before the first step. The round is written to a temporary folder and
renamed into place only when complete, so a crashed or cancelled round never leaves a usable adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models import cpu_has_native_bf16, default_device, load_model, load_tokenizer, resolve_quantization
from storage.labels import PreferencePair, training_items
from training import distributed
from training.config import DPOConfig
from training.data import (
    TokenizedPair,
    collate,
    heldout_size,
    row_length,
    split_heldout,
    step_batches,
    tokenize_examples,
    tokenize_pair,
)
from training.diagnose import DiagnosticSettings, diagnose
from training.folder import ADAPTER_DIR, staging_dir, write_result
from training.logps import completion_logps
from training.loss import dpo_loss, kto_kl, kto_loss, kto_metrics, metrics_by_slice, preference_metrics
from training.memory import GIB, MemoryPlan, MemoryPlanError, ModelShape, free_memory_budget, plan_memory


class TrainingError(RuntimeError):
    """A round could not run or finish; the message says what to change. The previous policy keeps serving."""


class RoundCancelled(TrainingError):
    """The round was stopped on request."""


@dataclass(frozen=True)
class RoundResult:
    adapter_dir: Path
    metrics: dict
    train_judgement_ids: list[int]
    heldout_judgement_ids: list[int]
    train_rating_ids: list[int] = dataclasses.field(default_factory=list)
    heldout_rating_ids: list[int] = dataclasses.field(default_factory=list)
    train_battle_ids: list[int] = dataclasses.field(default_factory=list)
    heldout_battle_ids: list[int] = dataclasses.field(default_factory=list)


def enough_items(items: Sequence, config: DPOConfig) -> list:
    """What a round trains on (`storage.labels.training_items`: for KTO each pair is a 👍 and a 👎 example);
    refuses a round whose training split would be smaller than `config.min_pairs`."""
    items = training_items(config.loss_type, items)
    n_pairs = len(items)
    n_train = n_pairs - heldout_size(n_pairs, config.heldout_fraction)
    if n_train < config.min_pairs and config.loss_type == "kto":
        raise TrainingError(
            f"Too few new labels for KTO: {n_pairs} 👍 / 👎 examples (need {config.min_pairs} for training after "
            f"holding out {config.heldout_fraction:.0%}; each picked pair gives one 👍 and one 👎, each 'both bad' "
            "two 👎). Label or rate more completions, or untick 'continue from the serving policy' to train a "
            "fresh adapter on all labels."
        )
    if n_train < config.min_pairs:
        raise TrainingError(
            f"Too few new preference pairs: {n_pairs} (need {config.min_pairs} for training after holding out "
            f"{config.heldout_fraction:.0%}). Label more pairs (pick left or right) — or rate completions 👍 / 👎 "
            "and pick the kto loss — or untick 'continue from the serving policy' to train a fresh adapter on all "
            "pairs."
        )
    return items


def run_round(
    config: DPOConfig,
    pairs: Sequence[PreferencePair],
    out_dir: Path,
    *,
    model: str,
    parent_adapter: str | None = None,
    lineage: dict | None = None,
    device: str | None = None,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_phase: Callable[[str, int, int | None, float], None] | None = None,
    diagnostic_prompts: Sequence[str] = (),
    diagnose_base: bool = True,
) -> RoundResult:
    """Train a LoRA adapter on `pairs` with DPO and write it, its config, metrics and label ids to `out_dir`.

    Training stops early at config.max_steps or config.target_margin (metrics["stopped"] says which). Then the
    trained policy and the base each answer `diagnostic_prompts` (held-out prompts, picked by training/plan.py)
    once (the base only with `diagnose_base`), for metrics["diagnostics"] (training/diagnose.py); with none, or
    config.diagnostic_prompts 0, no diagnostics are measured. `on_phase(name, done, total, seconds)` hears how
    each phase (load, reference, heldout_before, steps, heldout_after, diagnostics) gets on; `on_progress` each
    optimizer step's metrics.

    The config changes on the way, each variant named: `sized` has its micro-batch set for the device, `fitted`
    fits the step into a CPU's memory (training/memory.py), `trained` is the one training finished with (after
    an out-of-memory retry, a smaller one).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise TrainingError(f"{out_dir} already exists: pick a new round folder, or move the old one away.")
    train, heldout = split_heldout(enough_items(pairs, config), config.heldout_fraction, config.seed)
    device, quantization, world = _placement(config, device)
    sized = resolve_micro_batch(config, device)
    torch.manual_seed(sized.seed)
    started, phase = time.monotonic(), Phases(on_phase)  # where the round's time goes, saved with its metrics
    tokenizer, base, train_tok, heldout_tok = _load(model, sized, (train, heldout), (device, quantization), phase)
    fitted, memory_plan = _fit_memory(sized, train_tok, base, device, world)
    policy = _policy_with_adapter(base, fitted, parent_adapter, quantization)
    pad, dtype = tokenizer.pad_token_id, fitted.compute_dtype
    batch_logps = BatchLogps(policy, pad, device, fitted.micro_batch, world, should_stop, dtype, quantization)
    trainee = _Trainee(policy, tokenizer, batch_logps, device, quantization, world, phase)
    ref_train, ref_heldout = _reference_logps(trainee, fitted, train_tok, heldout_tok)
    held_out = _HeldOut(heldout_tok, ref_heldout, _desirable(heldout, fitted), _selections(heldout))
    heldout_before = _score_heldout_before(trainee, fitted, held_out)
    train_ref = (*ref_train, _desirable(train, fitted))
    history, trained = _train_steps(trainee, fitted, train_tok, train_ref, held_out, on_progress, should_stop)
    heldout_after, by_selection = _score_heldout_after(trainee, trained, held_out)
    diagnostics, samples = _diagnose(trainee, trained, diagnostic_prompts, diagnose_base)
    metrics = {"train": history[-1] if history else {}, "history": history, "heldout_before": heldout_before}
    metrics |= {"heldout_after": heldout_after, "heldout_by_selection": by_selection, "stopped": stop_record(history)}
    metrics |= {"diagnostics": diagnostics}
    metrics |= {"n_train": len(train), "n_heldout": len(heldout)} | _how_it_ran(trainee, fitted, trained, memory_plan)
    metrics |= {"seconds": round(time.monotonic() - started, 2), "phases": phase.seconds}
    record = {"dpo": trained.to_dict(), "base_model": model, "parent_adapter": parent_adapter} | (lineage or {})
    return _write(out_dir, trainee, record, metrics, (train, heldout), samples)


@dataclass(frozen=True)
class _Trainee:
    """What the phases after loading share: the policy with its adapter, its tokenizer, how to score items with
    it, where it runs, the processes it runs in, and the round's phase timer."""

    policy: Any
    tokenizer: Any
    batch_logps: BatchLogps
    device: str
    quantization: str
    world: distributed.World
    phase: Phases


@dataclass(frozen=True)
class _HeldOut:
    """The held-out items, tokenized, their reference log-probs, (KTO) their 👍 / 👎 labels and how each one's
    pair was chosen (labeling/selection.py; None for an arena battle or a rating)."""

    tok: list[TokenizedPair]
    ref: tuple[torch.Tensor, ...]
    labels: torch.Tensor | None
    selections: tuple[str | None, ...] = ()


def _placement(config: DPOConfig, device: str | None) -> tuple[str, str, distributed.World]:
    """(device, quantization, world): the device asked for or the default, one GPU per process under a
    launcher, and the quantization the config asks for there."""
    world = distributed.world()
    device = device or default_device()
    if world.size > 1 and device.startswith("cuda"):
        device = f"cuda:{world.local_rank}"
    return device, resolve_quantization(config.quantization, device), world


def _tokenize(tokenizer, items: list, config: DPOConfig) -> list[TokenizedPair]:
    """Pairs, or (KTO) 👍 / 👎 examples each with a mismatched completion for the KL estimate, tokenized."""
    if config.loss_type == "kto":
        return tokenize_examples(tokenizer, items, config.max_length, config.max_prompt_length, config.seed)
    return [tokenize_pair(tokenizer, p, config.max_length, config.max_prompt_length) for p in items]


def _desirable(items: list, config: DPOConfig) -> torch.Tensor | None:
    """The 👍 / 👎 labels of KTO examples, (n,) bool; None for pairs."""
    return torch.tensor([e.desirable for e in items], dtype=torch.bool) if config.loss_type == "kto" else None


def _selections(items: list) -> tuple[str | None, ...]:
    """How each item's pair was chosen ("spread", "control", "random", "edit"; None: not by a labeler's vote)."""
    return tuple(getattr(item, "selection", None) for item in items)


def _load(model: str, config: DPOConfig, splits: tuple[list, list], where: tuple[str, str], phase: Phases):
    """Phase "load": (tokenizer, base model, training items tokenized, held-out items tokenized); `where` is
    (device, quantization)."""
    (train, heldout), (device, quantization) = splits, where
    tokenizer = load_tokenizer(model)
    with phase("load", 1):
        train_tok, heldout_tok = _tokenize(tokenizer, train, config), _tokenize(tokenizer, heldout, config)
        base = load_model(model, quantization, device)
    return tokenizer, base, train_tok, heldout_tok


def _fit_memory(config: DPOConfig, train_tok, base, device: str, world) -> tuple[DPOConfig, MemoryPlan | None]:
    """On a CPU, the config whose step fits the memory (a CPU out of memory kills the process: fit the step
    before it runs), with its plan; on CUDA the config as is (out of memory there is caught and retried)."""
    if device.startswith("cuda"):
        return config, None
    budget = free_memory_budget(world.size) if config.memory_budget_gib is None else config.memory_budget_gib * GIB
    try:
        plan = plan_memory(config, train_tok, ModelShape.of(base), int(budget))
    except MemoryPlanError as err:
        raise TrainingError(f"{err} The previous policy keeps serving.") from err
    return plan.config, plan


def _reference_logps(trainee: _Trainee, config: DPOConfig, train_tok, heldout_tok) -> tuple[tuple, tuple]:
    """Phase "reference": the reference log-probs of the training and held-out items, once per round, with no
    second copy of the weights: the base is the policy with its adapter off; the previous policy is the adapter
    as loaded, before the first step."""
    reference = trainee.policy.disable_adapter() if config.reference == "base" else contextlib.nullcontext()
    with trainee.phase("reference", len(train_tok) + len(heldout_tok)) as tick, reference:
        ref_train = trainee.batch_logps(train_tok, tick=tick)
        ref_heldout = trainee.batch_logps(heldout_tok, tick=lambda done: tick(len(train_tok) + done))
    return ref_train, ref_heldout


def _score_heldout_before(trainee: _Trainee, config: DPOConfig, held_out: _HeldOut) -> dict | None:
    """Phase "heldout_before": the held-out metrics before training (None without held-out items). With the
    previous policy as reference, the policy before training is the reference itself."""
    before = config.reference == "previous" or not held_out.tok
    with trainee.phase("heldout_before", 0 if before else len(held_out.tok)) as tick:
        policy_heldout = held_out.ref if before else trainee.batch_logps(held_out.tok, tick=tick)
        scored = _score(policy_heldout, held_out.ref, config, held_out.labels) if held_out.tok else None
    return scored


def _train_steps(trainee: _Trainee, config: DPOConfig, train_tok, train_ref, held_out: _HeldOut, on_progress, stop):
    """Phase "steps" (steps report themselves, as "step" events): (history, the config that finished); one
    process retries once with a smaller micro-batch on out-of-memory (several must change it together)."""
    policy, batch_logps = trainee.policy, trainee.batch_logps

    def heldout_margin() -> float:
        """The held-out reward margin now, scored without dropout (target_margin's check)."""
        policy.eval()
        margin = _score(batch_logps(held_out.tok), held_out.ref, config, held_out.labels)["margin"]
        policy.train()
        return margin

    train_fn = _train_with_oom_retry if trainee.world.size == 1 else _train_as_is
    with trainee.phase("steps", None):
        found = train_fn(policy, train_tok, train_ref, config, batch_logps, on_progress, stop, heldout_margin)
    return found


def _score_heldout_after(trainee: _Trainee, config: DPOConfig, held_out: _HeldOut) -> tuple[dict | None, dict | None]:
    """Phase "heldout_after": (the held-out metrics of the trained policy, the same per pair-selection slice),
    each None without held-out items; the slices are None for KTO too (its examples are not pairs)."""
    with trainee.phase("heldout_after", len(held_out.tok)) as tick:
        if not held_out.tok:
            return None, None
        after = trainee.batch_logps(held_out.tok, tick=tick)
        scored = _score(after, held_out.ref, config, held_out.labels)
    return scored, _score_by_selection(after, held_out, config)


def _score_by_selection(policy_logps, held_out: _HeldOut, config: DPOConfig) -> dict | None:
    """Held-out accuracy and margin of the implicit reward per slice of how the pairs were chosen, so a selection
    strategy can be judged against its random control (evaluation/selection.py); None for KTO."""
    if held_out.labels is not None:
        return None
    _, chosen_rewards, rejected_rewards = dpo_loss(*policy_logps, *held_out.ref, beta=config.beta)
    return metrics_by_slice(chosen_rewards, rejected_rewards, held_out.selections)


def _diagnose(trainee: _Trainee, config: DPOConfig, prompts: Sequence[str], with_base: bool):
    """Phase "diagnostics", in the main process only (the others wait at the barrier before writing):
    (metrics["diagnostics"], the samples for diagnostics.json), or (None, None) without prompts to answer."""
    if not (prompts and config.diagnostic_prompts and trainee.world.main):
        return None, None
    with trainee.phase("diagnostics", None) as tick:
        where = (trainee.device, trainee.quantization)
        found = _diagnostics(trainee.policy, trainee.tokenizer, prompts, config, where, with_base, tick)
    return found


def _how_it_ran(trainee: _Trainee, fitted: DPOConfig, trained: DPOConfig, memory_plan: MemoryPlan | None) -> dict:
    """The metrics that say where and how the round trained: device, quantization, micro-batch, checkpointing,
    the out-of-memory retry (the retry finishes with a new, smaller config), autocast and the memory plan."""
    return {
        "device": trainee.device,
        "quantization": trainee.quantization,
        "micro_batch": trained.micro_batch,
        "gradient_checkpointing": trained.gradient_checkpointing,
        "oom_retry": trained is not fitted,
        "bf16_autocast": uses_bf16(trainee.device, trained.compute_dtype, trainee.quantization),
        "memory_plan": memory_plan.to_dict() if memory_plan else None,
    }


def _write(out_dir: Path, trainee: _Trainee, record: dict, metrics: dict, splits, samples) -> RoundResult:
    """Write the round (the main process; the others wait for it) and return what it trained on."""
    train, heldout = splits
    ids = {"train": _unique_ids(train, "judgement_id"), "heldout": _unique_ids(heldout, "judgement_id")}
    rating_ids = {"train": _unique_ids(train, "rating_id"), "heldout": _unique_ids(heldout, "rating_id")}
    battle_ids = {"train": _unique_ids(train, "battle_id"), "heldout": _unique_ids(heldout, "battle_id")}
    if trainee.world.main:
        labels = ids | {"ratings": rating_ids, "battles": battle_ids}
        _write_round(out_dir, trainee.policy, trainee.tokenizer, record, metrics, labels, samples)
    distributed.barrier(trainee.world)
    labels = (ids["train"], ids["heldout"], rating_ids["train"], rating_ids["heldout"])
    return RoundResult(out_dir / ADAPTER_DIR, metrics, *labels, battle_ids["train"], battle_ids["heldout"])


def _diagnostics(policy, tokenizer, prompts, config: DPOConfig, where: tuple[str, str], with_base: bool, tick=None):
    """(metrics["diagnostics"], the samples as diagnostics.json keeps them) for the trained policy (and the
    base) on the first config.diagnostic_prompts of `prompts`; `where` is (device, quantization)."""
    device, quantization = where
    prompts = list(prompts)[: config.diagnostic_prompts]
    settings = DiagnosticSettings.of(config)
    autocast = functools.partial(compute_autocast, device, config.compute_dtype, quantization)
    found = diagnose(policy, tokenizer, prompts, settings, device, autocast, with_base, tick)
    return found, {"prompts": prompts, "completions": found.pop("samples")}


class Phases:
    """Times a round's phases and reports each as it goes: `on_phase(name, done, total, seconds)` when it starts,
    at each tick (`done` of `total` units: pairs scored, samples drawn…) and when it ends. A phase whose total is
    None reports its own totals through the tick (`tick(done, total)`); one of total 0 is skipped in reports.

        phase = Phases(print)
        with phase("reference", 40) as tick:
            ...; tick(8)
        phase.seconds  # {"reference": 12.3}
    """

    def __init__(self, on_phase: Callable[[str, int, int | None, float], None] | None = None) -> None:
        self.on_phase = on_phase
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, total: int | None):
        start, known = time.monotonic(), {"total": total}

        def tick(done: int, total: int | None = None) -> None:
            known["total"] = total if total is not None else known["total"]
            if self.on_phase is not None and known["total"] != 0:
                self.on_phase(name, done, known["total"], round(time.monotonic() - start, 2))

        if total is not None:
            tick(0)
        yield tick
        self.seconds[name] = round(time.monotonic() - start, 2)
        if known["total"] is not None:
            tick(known["total"])


def stop_record(history: list[dict]) -> dict:
    """Why training stopped ("finished", "max_steps" or "target_margin") and after which optimizer step."""
    last = history[-1] if history else {}
    return {"reason": last.get("stop", "finished"), "step": last.get("step", 0)}


def resolve_micro_batch(config: DPOConfig, device: str) -> DPOConfig:
    """`config` with its micro-batch set: as given, else 1 on a CPU and the whole batch on CUDA.

    On a CPU one pair per forward/backward pass was fastest (default model, 24 pairs, batch 8, one epoch:
    micro-batches of 8 / 4 / 2 / 1 pairs took 77.8 / 65.6 / 58.4 / 57.5 s with short pairs, and 197.8 s for 8
    vs 115.6 s for 1 with chat-length pairs): nothing is padded and the working set stays in cache. A GPU
    needs large batches to be busy."""
    if config.micro_batch is not None:
        return config
    micro = config.batch_size if device.startswith("cuda") else 1
    return dataclasses.replace(config, micro_batch=micro)


def _policy_with_adapter(base, config: DPOConfig, parent_adapter: str | None, quantization: str):
    """Wrap the base in a trainable LoRA adapter: the parent's weights to continue, or a fresh one."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if quantization == "nf4":
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        _enable_checkpointing(base)
    if parent_adapter is not None:
        return PeftModel.from_pretrained(base, parent_adapter, is_trainable=True)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(base, lora)
    except ValueError as err:
        raise TrainingError(
            f"LoRA could not attach to this model ({err}); set target_modules to its layer names."
        ) from err


def compute_autocast(device: str, compute_dtype: str = "auto", quantization: str = "none"):
    """bf16 autocast, or nothing (fp32): matmuls and attention in bf16 even where QLoRA preparation keeps norms,
    embeddings and the LM head in fp32, as TRL's bf16 training does.

    'auto': on CUDA GPUs that support bf16, and on CPUs that multiply it natively for unquantized models (a
    reference pass of 12 chat-length pairs on the default model took 7.3–8.0 s instead of 16.0–17.0 s in fp32;
    summed log-probs moved by at most 2 nats in ~770). 'bfloat16' asks for it anywhere, 'float32' never."""
    if compute_dtype == "float32":
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()
    if compute_dtype == "bfloat16" or (quantization == "none" and cpu_has_native_bf16()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_bf16(device: str, compute_dtype: str, quantization: str) -> bool:
    return isinstance(compute_autocast(device, compute_dtype, quantization), torch.autocast)


SIDES = ("chosen", "rejected")


class BatchLogps:
    """Completion log-probs of tokenized pairs, in micro-batches: returns (chosen (n,), rejected (n,)), or one
    (n,) tensor per side asked for."""

    def __init__(
        self,
        policy,
        pad_token_id: int,
        device: str,
        batch_size: int,
        world=None,
        should_stop=None,
        compute_dtype: str = "float32",
        quantization: str = "none",
    ) -> None:
        self.policy, self.pad_token_id, self.device, self.batch_size = policy, pad_token_id, device, batch_size
        self.world = world or distributed.World()
        self.should_stop = should_stop
        self.compute_dtype, self.quantization = compute_dtype, quantization

    def forward(self, items: Sequence[TokenizedPair], sides=SIDES) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probs, completion lengths), each (len(sides) · len(items),): all items' first side, then the next."""
        batch = {k: v.to(self.device) for k, v in collate(items, self.pad_token_id, sides).items()}
        with compute_autocast(self.device, self.compute_dtype, self.quantization):
            logps = completion_logps(self.policy, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        return logps, batch["completion_mask"].sum(dim=1).float()

    @torch.no_grad()
    def __call__(self, items: Sequence[TokenizedPair], sides=SIDES, tick=None) -> tuple[torch.Tensor, ...]:
        """All items' log-probs, one (n,) tensor per side; with several processes each computes every
        world.size-th item, then all share.

        Items go through in order of length, so each micro-batch pads little; results come back in item order.
        Out of memory halves the micro-batch for this and later passes (the longest items come last), down to
        one pair; then it fails with what to lower. `tick(done)` hears how many items are scored so far.
        """
        w = self.world
        mine = sorted(range(w.rank, len(items), w.size), key=lambda i: row_length(items[i]))
        rows, i = [], 0
        while i < len(mine):
            _check_cancelled(self.should_stop)
            idx = mine[i : i + self.batch_size]
            try:
                logps, _ = self.forward([items[j] for j in idx], sides)
            except torch.OutOfMemoryError as err:
                if self.batch_size == 1:
                    raise TrainingError(
                        "Out of memory computing log-probs one pair at a time, without gradients: lower max length "
                        "or use a smaller model; the previous policy keeps serving."
                    ) from err
                _free_accelerator_memory()
                self.batch_size = max(1, self.batch_size // 2)
                continue
            rows += zip(idx, *(side.tolist() for side in logps.chunk(len(sides))), strict=True)
            i += len(idx)
            if tick is not None:
                tick(i * w.size)  # this process's share, times the processes: about the whole
        rows = sorted(distributed.gather(rows, w))
        return tuple(torch.tensor([r[k] for r in rows]) for k in range(1, len(sides) + 1))


def _check_cancelled(should_stop: Callable[[], bool] | None) -> None:
    """Raise RoundCancelled if a cancel was requested (checked between micro-batches)."""
    if should_stop is not None and should_stop():
        raise RoundCancelled("Round cancelled; the previous policy keeps serving.")


def _score(policy_logps, ref_logps, config: DPOConfig, desirable: torch.Tensor | None) -> dict:
    """Implicit-reward metrics of a set of pairs (DPO) or of 👍 / 👎 examples (KTO)."""
    if desirable is not None:
        kl = kto_kl(policy_logps[1], ref_logps[1])
        _, rewards = kto_loss(policy_logps[0], ref_logps[0], desirable, kl, config.beta)
        return kto_metrics(rewards, desirable)
    _, chosen_rewards, rejected_rewards = dpo_loss(*policy_logps, *ref_logps, beta=config.beta, loss_type="sigmoid")
    return preference_metrics(chosen_rewards, rejected_rewards)


def _unique_ids(items, field: str) -> list[int]:
    """Label ids (`judgement_id`, `rating_id` or `battle_id`) in first-seen order, leaving out items without one
    (a KTO pair gives two examples with one judgement id; a rating has no judgement id)."""
    values = (getattr(item, field, None) for item in items)
    return list(dict.fromkeys(v for v in values if v is not None))


def _train_with_oom_retry(policy, train_tok, ref_logps, config, batch_logps, on_progress, should_stop, margin=None):
    """Train; on out-of-memory, restart once from the initial adapter with half the micro-batch (same
    effective batch) and gradient checkpointing. Returns (history, the config that finished)."""
    initial = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    try:
        return _train(policy, train_tok, ref_logps, config, batch_logps, on_progress, should_stop, margin), config
    except torch.OutOfMemoryError:
        pass
    _free_accelerator_memory()
    smaller = dataclasses.replace(config, micro_batch=max(1, config.micro_batch // 2), gradient_checkpointing=True)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if name in initial:
                param.copy_(initial[name])
                param.grad = None
    _enable_checkpointing(policy.get_base_model())
    batch_logps.batch_size = smaller.micro_batch
    try:
        return _train(policy, train_tok, ref_logps, smaller, batch_logps, on_progress, should_stop, margin), smaller
    except torch.OutOfMemoryError as err:
        raise TrainingError(
            f"Out of memory even with a micro-batch of {smaller.micro_batch} pair(s) and gradient checkpointing. "
            "Lower max length or LoRA rank, or use a smaller model; the previous policy keeps serving."
        ) from err


def _enable_checkpointing(model) -> None:
    """Recompute activations in backward (non-reentrant, so it works with frozen inputs and LoRA)."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def _train_as_is(policy, train_tok, ref_logps, config, batch_logps, on_progress, should_stop, margin=None):
    """Train without the out-of-memory retry (several processes must change micro-batch together)."""
    return _train(policy, train_tok, ref_logps, config, batch_logps, on_progress, should_stop, margin), config


def _free_accelerator_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train(
    policy, train_tok, ref_logps, config: DPOConfig, batch_logps, on_progress, should_stop, heldout_margin=None
) -> list[dict]:
    """The optimization loop; returns one metrics dict per optimizer step. It ends after config.epochs, or
    earlier at config.max_steps (the schedule then spans max_steps, as TRL's does) or once `heldout_margin()`
    reaches config.target_margin; the last step's dict then says why under "stop"."""
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    pairs_per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(train_tok) / pairs_per_step)
    planned = steps_per_epoch * config.epochs
    total_steps = min(planned, config.max_steps or planned)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / total_steps)
    rng = random.Random(config.seed)
    lengths = [row_length(p) for p in train_tok]
    history: list[dict] = []
    started = time.monotonic()
    policy.train()
    batches = (
        (epoch, step_idx)
        for epoch in range(config.epochs)
        for step_idx in step_batches(lengths, pairs_per_step, rng, config.group_by_length)
    )
    for epoch, step_idx in itertools.islice(batches, total_steps):
        stats = train_step(policy, train_tok, ref_logps, step_idx, config, batch_logps, should_stop)
        distributed.sum_gradients(params, batch_logps.world)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stats |= {
            "step": len(history) + 1,
            "total_steps": total_steps,
            "epoch": epoch + 1,
            "seconds": round(time.monotonic() - started, 2),
        }
        stats |= _early_stop(config, stats["step"], total_steps < planned, heldout_margin)
        history.append(stats)
        if on_progress is not None:
            on_progress(stats)
        if "stop" in stats:
            break
    # A loss checked finite before backward can still give an infinite gradient; clipping turns it into NaN and
    # the optimizer writes it into the weights. Nothing scores or saves weights that are not all finite.
    if not all(torch.isfinite(p).all() for p in params):
        raise TrainingError(
            "The LoRA weights became NaN or infinite in training; the round stopped and the previous policy keeps "
            "serving. Lower the learning rate or beta and try again."
        )
    policy.eval()
    return history


def _early_stop(config: DPOConfig, step: int, capped: bool, heldout_margin) -> dict:
    """What to add to a step's metrics: the held-out margin when target_margin is checked at this step, and
    "stop" with the reason when training ends here before its epochs are done."""
    found = {}
    if config.target_margin is not None and heldout_margin is not None and step % config.eval_every == 0:
        found["heldout_margin"] = heldout_margin()
        if found["heldout_margin"] >= config.target_margin:
            return found | {"stop": "target_margin"}
    if capped and step == config.max_steps:
        found["stop"] = "max_steps"
    return found


def train_step(policy, train_tok, ref_logps, step_idx, config, batch_logps, should_stop) -> dict:
    """Forward/backward over the micro-batches of one optimizer step; returns its mean metrics.

    `ref_logps` is (ref_chosen, ref_rejected, desirable): for KTO the "chosen" row is the example's completion,
    the "rejected" row a mismatched completion for the KL estimate, and `desirable` its 👍 / 👎 label.
    """
    ref_chosen, ref_rejected, desirable = ref_logps
    w = batch_logps.world
    mine = step_idx[w.rank :: w.size]  # this process's share; gradients are summed across processes
    losses, first, second = [], [], []
    micro = config.micro_batch or config.batch_size
    kto = desirable is not None
    if kto:
        # One KL estimate over the whole step (every process's examples, as TRL gathers it), so it does not depend on
        # the micro-batch size or the number of processes. It takes no gradient, so the mismatched rows go through
        # the model once per step without one, and the micro-batches below carry only the examples' completions.
        (policy_kl,) = batch_logps([train_tok[j] for j in step_idx], sides=("rejected",))
        kl = kto_kl(policy_kl, ref_rejected[step_idx])
    for i in range(0, len(mine), micro):
        _check_cancelled(should_stop)
        idx = mine[i : i + micro]
        logps, lengths = batch_logps.forward([train_tok[j] for j in idx], ("chosen",) if kto else SIDES)
        device = logps.device
        if kto:
            labels = desirable[idx].to(device)
            loss, rewards = kto_loss(logps, ref_chosen[idx].to(device), labels, kl.to(device), beta=config.beta)
            first.append(rewards.cpu())
            second.append(labels.cpu())
        else:
            loss, cr, rr = dpo_loss(
                *logps.chunk(2),
                ref_chosen[idx].to(device),
                ref_rejected[idx].to(device),
                beta=config.beta,
                loss_type=config.loss_type,
                label_smoothing=config.label_smoothing,
                chosen_lengths=lengths[: len(idx)],
                rejected_lengths=lengths[len(idx) :],
                dpop_lambda=config.dpop_lambda,
            )
            if config.rpo_alpha:  # RPO: NLL per token of the chosen answers (TRL's rpo_alpha)
                loss = loss - config.rpo_alpha * logps[: len(idx)] / lengths[: len(idx)].clamp(min=1)
            first.append(cr.cpu())
            second.append(rr.cpu())
        if not torch.isfinite(loss).all():
            raise TrainingError(
                "The loss became NaN or infinite; the round stopped and the previous policy keeps serving. "
                "Lower the learning rate or beta and try again."
            )
        (loss.sum() / len(step_idx)).backward()
        losses.append(loss.detach().cpu())
    parts = distributed.gather([(torch.cat(losses), torch.cat(first), torch.cat(second))] if losses else [], w)
    losses, first, second = (torch.cat([p[k] for p in parts]) for k in range(3))
    metrics = kto_metrics if kto else preference_metrics
    return {"loss": losses.mean().item()} | metrics(first, second)


def _write_round(
    out_dir: Path, policy, tokenizer, record: dict, metrics: dict, ids: dict, samples: dict | None = None
) -> None:
    """Write everything into the staging folder beside `out_dir` (which may already hold the round's request and
    input, see training/plan.py), then rename it into place in one step. `samples`: the diagnostic prompts and
    the trained policy's answers, kept as diagnostics.json."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out_dir)
    tmp.mkdir(exist_ok=True)
    shutil.rmtree(tmp / ADAPTER_DIR, ignore_errors=True)
    try:
        policy.save_pretrained(tmp / ADAPTER_DIR)
        write_result(tmp, record, metrics, ids, samples)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
