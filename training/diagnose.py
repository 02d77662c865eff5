"""Round diagnostics, measured at the end of a round in its own process, where the trained policy is in memory.

    found = diagnose(policy, tokenizer, prompts, DiagnosticSettings(max_new_tokens=96), device="cpu")
    found["policy"]   # {"mean_length", "distinct_2", "repeated_4gram", "kl_per_token", "nll", "foreign_script"}
    found["base"]     # with_base: the same for the base (its adapter off) on the same prompts; KL 0 by definition
    found["prompts_key"]  # names the prompts and settings: numbers with equal keys compare prompt by prompt

Each version samples one completion per held-out prompt with the app's sampling settings (temperature 0.8,
top-p 0.95, as labelers see it); `evaluation.diagnostics` turns the token ids into numbers. KL(π‖π_ref) per
token is estimated from the policy's own samples as the mean of log π − log π_ref over their tokens (the EOS
that ended a sample included), with π_ref the base (the adapter switched off) whichever reference the round
trained against, so every round's KL is measured from the same place. The samples are drawn at temperature
0.8 with a nucleus, so this is the KL seen on what labelers are shown, close to but not exactly the
untempered KL.

Fluency: "nll" is the mean NLL per token of a version's answers (EOS included) under the base model, given the
prompt; the base's own answers are the reference, and gibberish scores far above them. "foreign_script" is the
share of the answers' letters in a script their prompt does not use. The health gate (training/gate.py) holds
a round's numbers against the base's.

The base is measured only until a round has measured it on the same prompts and settings (training/plan.py
decides; see `diagnose` for why): the plot over rounds starts from a "base" point, and the gate compares a
round with the base prompt by prompt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList

from evaluation.diagnostics import (
    distinct_n,
    foreign_script_share,
    kl_per_token,
    lifted_tokens,
    mean_length,
    mean_nll,
    repeated_ngram_rate,
)
from models.chat import prompt_ids
from serving.sampling import NucleusSampler, SamplingSettings, stop_ids

SAMPLE_BATCH = 8  # prompts sampled together: a decoding step of 8 rows costs little more than one of 1


@dataclass(frozen=True)
class DiagnosticSettings:
    """How a round's diagnostic samples are drawn: the app's sampling settings, a fixed seed (each round draws
    the same way), and where a long prompt is cut (its last tokens kept, as the app does)."""

    max_new_tokens: int = 96
    temperature: float = SamplingSettings.temperature
    top_p: float = SamplingSettings.top_p
    seed: int = 0
    max_prompt_tokens: int = 1024

    @classmethod
    def of(cls, config) -> DiagnosticSettings:
        """How a round with this DPOConfig samples its diagnostics."""
        return cls(config.diagnostic_tokens, seed=config.seed)


def diagnose(
    policy,
    tokenizer,
    prompts: Sequence[str],
    settings: DiagnosticSettings,
    device: str,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    with_base: bool = True,
    tick: Callable[[int, int], None] | None = None,
) -> dict:
    """Diagnostics of the trained `policy` (a PEFT model), and with `with_base` of its base, each sampling one
    completion per prompt. Returns {"prompts", "max_new_tokens", "policy": numbers, "base": numbers or None,
    "samples": the policy's texts}.

    Why the base is not measured every round: on the tiny test llama (16 prompts, 96 new tokens, a shared
    2-core CPU) the policy's samples took 46 s and both scoring passes 10 s, and the base's samples 90 s more,
    2.6x in all (a random model's near-uniform next-token distribution makes every nucleus draw sort the whole
    vocabulary). Measured once, the base is a fixed point to compare every round with.
    """
    policy.eval()
    versions = 2 if with_base else 1
    total = versions * len(prompts) + (versions + 1) * len(prompts)  # answers drawn, then answers scored
    count = _Counter(tick, total)
    policy_ids = sample(policy, tokenizer, prompts, settings, device, autocast, count)
    base_ids = None
    if with_base:
        with policy.disable_adapter():
            base_ids = sample(policy, tokenizer, prompts, settings, device, autocast, count)
    contexts = [prompt_ids(tokenizer, p, keep_last=settings.max_prompt_tokens) for p in prompts]
    policy_logps = token_logps(policy, contexts, policy_ids, device, autocast, count)
    with policy.disable_adapter():
        ref_logps = token_logps(policy, contexts, policy_ids, device, autocast, count)
        base_logps = token_logps(policy, contexts, base_ids, device, autocast, count) if with_base else None
    eos = _stops(policy, tokenizer)

    def measured(ids: list, under_base: list, kl: float) -> dict:
        texts = [tokenizer.decode(_text(i, eos), skip_special_tokens=True) for i in ids]
        return numbers([_text(i, eos) for i in ids], kl, under_base, prompts, texts)

    policy_numbers = measured(policy_ids, ref_logps, kl_per_token(policy_logps, ref_logps))
    return {
        "prompts": len(prompts),
        "prompts_key": prompts_key(prompts, settings),
        "max_new_tokens": settings.max_new_tokens,
        "policy": policy_numbers | lifted(policy_ids, policy_logps, ref_logps, tokenizer),
        "base": measured(base_ids, base_logps, 0.0) if base_ids is not None else None,
        "samples": [tokenizer.decode(_text(ids, eos), skip_special_tokens=True) for ids in policy_ids],
    }


class _Counter:
    """Counts units of work done and tells `tick(done, total)` after each batch (nothing when tick is None)."""

    def __init__(self, tick: Callable[[int, int], None] | None, total: int) -> None:
        self.tick, self.total, self.done = tick, total, 0

    def __call__(self, units: int) -> None:
        self.done += units
        if self.tick is not None:
            self.tick(self.done, self.total)


def prompts_key(prompts: Sequence[str], settings: DiagnosticSettings) -> str:
    """Names the prompts and sampling settings a measurement was made on: two rounds' numbers compare directly
    (paired, prompt by prompt and seed by seed) when their keys are equal."""
    payload = json.dumps([list(prompts), dataclasses.asdict(settings)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def numbers(
    completions: Sequence[Sequence[int]],
    kl: float,
    under_base: Sequence[Sequence[float]] | None = None,
    prompts: Sequence[str] = (),
    texts: Sequence[str] = (),
) -> dict:
    """The statistics of one version's samples (token ids without EOS), as `RoundDiagnostics` names them; with
    `under_base` (the base's log-probs of each sample's tokens, EOS included) their fluency, and with the
    `prompts` and decoded `texts` the share of letters in a script the prompt does not use."""
    repetition = repeated_ngram_rate(completions, n=4)
    distinct = distinct_n(completions, n=2)
    nll = mean_nll(under_base) if under_base is not None else float("nan")
    script = foreign_script_share(prompts, texts) if texts else float("nan")
    return {
        "mean_length": mean_length(completions),
        "distinct_2": _or_none(distinct),  # NaN (no sample has 2 tokens): unknown
        "repeated_4gram": repetition.share_with_repeats,
        "kl_per_token": kl,
        "nll": _or_none(nll),
        "foreign_script": _or_none(script),
    }


def lifted(ids: Sequence[Sequence[int]], policy_logps: list, ref_logps: list, tokenizer, shown: int = 5) -> dict:
    """Where a version writes what the base would not (evaluation.diagnostics.lifted_tokens on its samples' log-probs
    under it and under the base): "lifted_share", the share of samples with such a token, and "lifted", up to
    `shown` of them in context with the token in brackets, to read ("…noise-[caking] headphones…")."""
    found = lifted_tokens(policy_logps, ref_logps)
    examples = []
    for row, positions in zip(ids, found, strict=True):
        for t in positions[:1]:
            before, after = tokenizer.decode(row[max(t - 4, 0) : t]), tokenizer.decode(row[t + 1 : t + 3])
            examples.append(f"{before}[{tokenizer.decode(row[t : t + 1])}]{after}".replace("\n", " ").strip())
    return {"lifted_share": sum(map(bool, found)) / len(found) if found else None, "lifted": examples[:shown]}


def _or_none(value: float) -> float | None:
    return None if value != value else value


@torch.no_grad()
def sample(
    model, tokenizer, prompts: Sequence[str], settings: DiagnosticSettings, device: str, autocast, count=None
) -> list:
    """One completion per prompt from `model` as it is now (adapter on or off): new token ids, up to and with
    the EOS that ended it. Seeded, so the base and the policy draw alike."""
    torch.manual_seed(settings.seed)
    sampler = LogitsProcessorList([NucleusSampler(settings.temperature, settings.top_p)])
    eos = _stops(model, tokenizer)
    out = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(prompts), SAMPLE_BATCH):
            rows = [prompt_ids(tokenizer, p, settings.max_prompt_tokens) for p in prompts[start : start + SAMPLE_BATCH]]
            batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt").to(device)
            with autocast():
                generated = model.generate(
                    **batch,
                    do_sample=False,  # NucleusSampler draws the token; greedy selection then takes it
                    logits_processor=sampler,
                    max_new_tokens=settings.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
            out += [_through_eos(row, eos) for row in generated[:, batch["input_ids"].shape[1] :].tolist()]
            if count is not None:
                count(len(rows))
    finally:
        tokenizer.padding_side = side
    return out


@torch.no_grad()
def token_logps(
    model, contexts: Sequence[list[int]], completions: Sequence[list[int]], device: str, autocast, count=None
) -> list:
    """log p(token) of each completion token given its prompt and the tokens before it, one list per
    completion; one sequence at a time, so no padded [batch, length, vocab] tensor is ever built."""
    found = []
    for context, completion in zip(contexts, completions, strict=True):
        found.append(_scored(model, context, completion, device, autocast) if completion else [])
        if count is not None:
            count(1)
    return found


def _scored(model, context: list[int], completion: list[int], device: str, autocast) -> list[float]:
    ids = torch.tensor([context + completion], device=device)
    with autocast():
        logits = model(input_ids=ids, use_cache=False).logits[0, len(context) - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[0, len(context) :, None]).squeeze(-1).tolist()


def _stops(model, tokenizer) -> set[int]:
    """The token ids that end a completion: the tokenizer's EOS and the model's generation EOS ids."""
    return stop_ids(tokenizer, model.generation_config.eos_token_id)


def _through_eos(row: list[int], stops: set[int]) -> list[int]:
    """The tokens of a generated row up to and including its first stop token (the rest is padding)."""
    kept = list(itertools.takewhile(lambda t: t not in stops, row))
    return kept + row[len(kept) : len(kept) + 1]


def _text(ids: list[int], stops: set[int]) -> list[int]:
    """A sample's tokens without the stop token that ended it: what its length and n-grams count."""
    return ids[:-1] if ids and ids[-1] in stops else ids


__all__ = ["DiagnosticSettings", "diagnose", "numbers"]
