"""From preference pairs (prompt / chosen / rejected text) to padded token batches.

Tokenization follows TRL's conversational format: the prompt is the chat template with the generation
prompt; the completion is what the template adds for the assistant turn (its end-of-turn token included).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.chat import template_ids
from storage.labels import PreferencePair, UnpairedExample


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tokenize_pair(tokenizer, pair: PreferencePair, max_length: int, max_prompt_length: int) -> TokenizedPair:
    """Chat-template the pair; the completion starts where prompt and prompt+completion diverge (as TRL does)."""
    messages = [{"role": "user", "content": pair.prompt}]
    prompt_ids = template_ids(tokenizer, messages, add_generation_prompt=True)
    full = {
        side: template_ids(tokenizer, messages + [{"role": "assistant", "content": text}], add_generation_prompt=False)
        for side, text in (("chosen", pair.chosen), ("rejected", pair.rejected))
    }
    prompt_len = min(_common_prefix(prompt_ids, ids) for ids in full.values())
    prompt_ids = prompt_ids[:prompt_len][-max_prompt_length:]
    budget = max_length - len(prompt_ids)
    return TokenizedPair(
        prompt_ids=prompt_ids,
        chosen_ids=full["chosen"][prompt_len:][:budget],
        rejected_ids=full["rejected"][prompt_len:][:budget],
    )


def collate(
    pairs: Sequence[TokenizedPair], pad_token_id: int, sides: Sequence[str] = ("chosen", "rejected")
) -> dict[str, torch.Tensor]:
    """Right-padded batch of 2B rows: the B chosen sequences, then the B rejected ones (or only `sides`).

    Returns input_ids, attention_mask and completion_mask, each (2B, T); completion_mask marks the
    completion tokens whose log-probabilities are summed.
    """
    rows = [(p.prompt_ids, getattr(p, f"{side}_ids")) for side in sides for p in pairs]
    width = max(len(prompt) + len(completion) for prompt, completion in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, completion) in enumerate(rows):
        n = len(prompt) + len(completion)
        input_ids[i, :n] = torch.tensor(prompt + completion, dtype=torch.long)
        attention_mask[i, :n] = 1
        completion_mask[i, len(prompt) : n] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}


def row_length(pair: TokenizedPair) -> int:
    """Padded width a pair needs in a batch: its prompt plus its longer completion, in tokens."""
    return len(pair.prompt_ids) + max(len(pair.chosen_ids), len(pair.rejected_ids))


def step_batches(
    lengths: Sequence[int], pairs_per_step: int, rng: random.Random, group_by_length: bool, group_steps: int = 16
) -> list[list[int]]:
    """One epoch as optimizer steps of `pairs_per_step` indices: every index once, in random order.

    With `group_by_length`, the shuffled indices are cut into blocks of `group_steps` steps; each block is
    sorted by length before it is cut into steps, so a step's pairs need little padding. Steps are then
    shuffled, except that the longest goes first: a round that runs out of memory does so at once.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if not group_by_length:
        return [order[i : i + pairs_per_step] for i in range(0, len(order), pairs_per_step)]
    block = pairs_per_step * group_steps
    steps = []
    for start in range(0, len(order), block):
        ranked = sorted(order[start : start + block], key=lambda i: lengths[i], reverse=True)
        steps += [ranked[i : i + pairs_per_step] for i in range(0, len(ranked), pairs_per_step)]
    longest = max(range(len(steps)), key=lambda k: max(lengths[i] for i in steps[k]), default=0)
    first, rest = steps[longest : longest + 1], steps[:longest] + steps[longest + 1 :]
    rng.shuffle(rest)
    return first + rest


def split_heldout(items: Sequence[PreferencePair | UnpairedExample], fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split into (train, heldout); heldout gets round(fraction·n) items but leaves at least one to train.

    The examples of one judgement or arena battle (for KTO, a pair's 👍 and 👎, or the two 👎 of "both bad") stay
    on one side: otherwise a held-out completion would be scored after training on the other half of its own
    pair. Such a group may take the held-out share one item over round(fraction·n)."""
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(_label_of(item, i), []).append(i)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    n_heldout, heldout = heldout_size(len(items), fraction), []
    for group in order:
        if len(heldout) >= n_heldout or len(heldout) + len(group) > len(items) - 1:
            break
        heldout += group
    held = set(heldout)
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def _label_of(item: PreferencePair | UnpairedExample, i: int) -> tuple:
    """The label an item came from, which keeps its examples together: its judgement, its battle, else itself."""
    if item.judgement_id is not None:
        return ("judgement", item.judgement_id)
    return ("item", i) if item.battle_id is None else ("battle", item.battle_id)


def heldout_size(n_pairs: int, fraction: float) -> int:
    """How many of `n_pairs` are held out: round(fraction·n), leaving at least one pair to train on."""
    return min(round(fraction * n_pairs), max(n_pairs - 1, 0))


def tokenize_examples(
    tokenizer, examples: Sequence[UnpairedExample], max_length: int, max_prompt_length: int, seed: int
) -> list[TokenizedPair]:
    """KTO rows in the pair layout: `chosen_ids` is the example's completion, `rejected_ids` another example's
    completion to the same prompt (a seeded derangement), whose log-ratio estimates the KL term."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    other = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    return [
        tokenize_pair(
            tokenizer,
            PreferencePair(e.prompt, e.completion, examples[other[i]].completion),
            max_length,
            max_prompt_length,
        )
        for i, e in enumerate(examples)
    ]
