"""How completions are sampled: the settings stored with every generation, and the nucleus draw.

    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=128, seed=0)
    model.generate(..., do_sample=False, logits_processor=[NucleusSampler(0.8, 0.95)])

`NucleusSampler` draws from `torch`'s global generator, so a seed repeats its completions on the same machine
and backend.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from transformers import LogitsProcessor


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are sampled; stored with every generation."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.temperature <= 2 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be in (0, 2], got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (isinstance(self.max_new_tokens, int) and 1 <= self.max_new_tokens <= 2048):
            raise ValueError(f"max_new_tokens must be an integer in [1, 2048], got {self.max_new_tokens!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class NucleusSampler(LogitsProcessor):
    """Draws each row's next token from its top-p nucleus at `temperature`; returns scores of 0 for the drawn
    token and -inf elsewhere, so greedy `generate` (do_sample=False) emits exactly the drawn tokens.

    The nucleus is the one transformers' `TopPLogitsWarper` keeps: a token stays while it and all less likely
    tokens hold more than 1 - `top_p` of the probability (so the most likely token always stays). On CPU the
    nucleus is looked for in the top `first_k` tokens (a top-k instead of a sort of the whole vocabulary, and
    a draw over k tokens instead of all), and the vocabulary is sorted only when some row's nucleus is larger;
    on other devices the vocabulary is always sorted, which needs no host synchronization.
    """

    def __init__(self, temperature: float, top_p: float, first_k: int = 256) -> None:
        self.temperature, self.top_p, self.first_k = temperature, top_p, first_k

    def nucleus(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, token ids), both [batch, k]: each row's most likely tokens in order, with their
        probabilities as weights, 0 past the nucleus."""
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        vocab = probs.shape[-1]
        total = probs.sum(dim=-1, keepdim=True, dtype=torch.float64)
        k = min(vocab, self.first_k) if probs.device.type == "cpu" and self.top_p < 1 else vocab
        top, index = torch.topk(probs, k, dim=-1) if k < vocab else torch.sort(probs, dim=-1, descending=True)
        keep = self._keep(top, total)
        if k < vocab and bool(keep[:, -1].any()):  # some row's nucleus goes past the top k: sort them all
            top, index = torch.sort(probs, dim=-1, descending=True)
            keep = self._keep(top, total)
        if self.top_p >= 1:
            return top, index
        if probs.device.type == "cpu":  # the nucleus is a prefix of each row: draw from the widest one only
            width = int(keep.sum(dim=-1).max())
            top, index, keep = top[:, :width], index[:, :width], keep[:, :width]
        return top * keep, index

    def _keep(self, top: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """transformers keeps a token while it and all less likely tokens hold more than 1 - top_p of the mass;
        that mass is computed as total - (mass of the likelier tokens), in float64, to agree at the boundary."""
        above = top.cumsum(dim=-1, dtype=torch.float64).sub_(top)
        keep = above < total - (1 - self.top_p)
        keep[:, 0] = True  # the most likely token always stays, even when rounding leaves the total below top_p
        return keep

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        weights, index = self.nucleus(scores)
        token = index.gather(-1, torch.multinomial(weights, 1))
        return torch.full_like(scores, float("-inf")).scatter_(-1, token, 0.0)


def stop_ids(tokenizer, eos: int | list[int] | None) -> set[int]:
    """The token ids that end a completion: the tokenizer's EOS and the model's (`eos`: one id, a list, or
    None), as every backend and the round's diagnostics cut completions."""
    return {tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}


def chat_text(tokenizer, prompt: str) -> str:
    """`prompt` as one user turn in the model's chat template, ready for the assistant's answer."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


class Completion(str):
    """A sampled completion's text; `cut_at`: the number of new tokens when the token limit stopped it (None:
    it ended with its own end-of-sequence token)."""

    cut_at: int | None

    def __new__(cls, text: str, cut_at: int | None = None) -> Completion:
        completion = super().__new__(cls, text)
        completion.cut_at = cut_at
        return completion


def decode_completions(tokenizer, tokens: list[list[list[int]]], max_new_tokens: int) -> list[list[Completion]]:
    """Each prompt's completions (new tokens up to, without, EOS) as text; one that fills `max_new_tokens`
    had no EOS, so the limit cut it."""
    return [
        [
            Completion(
                tokenizer.decode(t, skip_special_tokens=True).strip(),
                len(t) if len(t) >= max_new_tokens else None,
            )
            for t in row
        ]
        for row in tokens
    ]
