"""Round diagnostics: diversity, repetition, length and KL of a version's samples, and plain-language warnings
when a history of rounds shows a known DPO failure.

Texts are whitespace-split strings or lists of token ids. Log-probs are per-token lists, one per sequence
sampled from the policy; no torch needed.

    from evaluation.diagnostics import RoundDiagnostics, warnings
    history = [RoundDiagnostics("base", mean_length=80.0), RoundDiagnostics("round_001", mean_length=130.0)]
    for line in warnings(history):
        print(line)
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Text = str | Sequence[int]


def _tokens(text: Text) -> list:
    """Whitespace tokens of a string, or the token ids as given."""
    return text.split() if isinstance(text, str) else list(text)


def _ngrams(tokens: list, n: int) -> list[tuple]:
    """The n-grams of one token list, in order (empty when it has fewer than n tokens)."""
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[Text], n: int = 2) -> float:
    """Corpus-level distinct-n (Li et al. 2016): distinct n-grams / all n-grams, pooled over `texts`.

    Returns a share in (0, 1]; low means the samples reuse the same phrases. NaN when no text has n tokens.
    """
    grams = [g for text in texts for g in _ngrams(_tokens(text), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


@dataclass(frozen=True)
class Repetition:
    """`share_with_repeats`: fraction of texts in which some n-gram occurs twice or more. `mean_repeated`: mean
    over texts of the fraction of their n-grams that repeat an earlier one (rep-n, Welleck et al. 2019)."""

    share_with_repeats: float
    mean_repeated: float


def repeated_ngram_rate(texts: Sequence[Text], n: int = 4) -> Repetition:
    """How degenerate the samples are; texts shorter than n count as having no repeats.

    Returns a Repetition (both NaN when `texts` is empty).
    """
    if not texts:
        return Repetition(float("nan"), float("nan"))
    repeated = []
    for text in texts:
        grams = _ngrams(_tokens(text), n)
        repeated.append(1 - len(set(grams)) / len(grams) if grams else 0.0)
    return Repetition(float(np.mean([r > 0 for r in repeated])), float(np.mean(repeated)))


def mean_length(texts: Sequence[Text]) -> float:
    """Mean length in tokens (whitespace tokens, or ids); NaN when `texts` is empty."""
    return float(np.mean([len(_tokens(t)) for t in texts])) if texts else float("nan")


def kl_per_token(policy_logps: Sequence[Sequence[float]], ref_logps: Sequence[Sequence[float]]) -> float:
    """Monte-Carlo estimate of KL(π‖π_ref) per token, from sequences sampled from π.

    policy_logps[s][t], ref_logps[s][t]: log π and log π_ref of token t of sample s (same lengths).
    Returns the mean of log π − log π_ref over all tokens, pooled (long samples weigh more), in nats. Unbiased
    but noisy: small negative values are possible and mean "about zero".
    """
    if len(policy_logps) != len(ref_logps):
        raise ValueError(f"got {len(policy_logps)} policy and {len(ref_logps)} reference sequences; pass one each")
    diffs = []
    for s, (policy, ref) in enumerate(zip(policy_logps, ref_logps, strict=True)):
        if len(policy) != len(ref):
            raise ValueError(
                f"sequence {s} has {len(policy)} policy but {len(ref)} reference log-probs; score the same tokens"
            )
        diffs.append(np.asarray(policy, dtype=float) - np.asarray(ref, dtype=float))
    tokens = np.concatenate(diffs) if diffs else np.array([])
    if tokens.size == 0:
        raise ValueError("no tokens to average: sample at least one non-empty completion from the policy")
    return float(tokens.mean())


LIFT_NATS, UNLIKELY_NATS = 4.0, -6.0  # lifted_tokens' defaults: how much likelier, and how unlikely before


def lifted_tokens(
    policy_logps: Sequence[Sequence[float]],
    ref_logps: Sequence[Sequence[float]],
    lift: float = LIFT_NATS,
    ref_below: float = UNLIKELY_NATS,
) -> list[list[int]]:
    """Per sequence sampled from π, the positions of tokens π made at least `lift` nats likelier than π_ref
    where π_ref found them unlikely (log-prob under `ref_below`): where a round writes what the base would not,
    such as a word it invented. The mean NLL and KL average such tokens away; this points at them.

    policy_logps[s][t], ref_logps[s][t]: as for kl_per_token.
    """
    if len(policy_logps) != len(ref_logps):
        raise ValueError(f"got {len(policy_logps)} policy and {len(ref_logps)} reference sequences; pass one each")
    found = []
    for policy, ref in zip(policy_logps, ref_logps, strict=True):
        if len(policy) != len(ref):
            raise ValueError(f"{len(policy)} policy but {len(ref)} reference log-probs; score the same tokens")
        found.append([t for t, (p, r) in enumerate(zip(policy, ref, strict=True)) if r < ref_below and p - r >= lift])
    return found


def mean_nll(logps: Sequence[Sequence[float]]) -> float:
    """Mean negative log-likelihood per token, pooled over sequences (long ones weigh more), in nats.

    logps[s][t]: log p(token t of sequence s) under the judging model, e.g. the base model scoring a round's
    answers: fluent text the base would write scores near the base's own answers; gibberish far above them.
    NaN when there are no tokens.
    """
    tokens = [x for seq in logps for x in seq]
    return -float(np.mean(tokens)) if tokens else float("nan")


def _script(char: str) -> str:
    """The writing system of a letter, from its Unicode name's first word (LATIN, CYRILLIC, CJK, ...)."""
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def _letters(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c).startswith("L")]


def foreign_script_share(prompts: Sequence[str], texts: Sequence[str]) -> float:
    """Share of the answers' letters written in a script that their prompt does not use (Latin for a prompt
    without letters), pooled over all answers: ~0 for a model that answers in the prompt's language, high when
    it drifts into other scripts ("Васлушарь…" for an English prompt). NaN when the answers have no letters."""
    if len(prompts) != len(texts):
        raise ValueError(f"got {len(prompts)} prompts and {len(texts)} answers; pass one prompt per answer")
    foreign = total = 0
    for prompt, text in zip(prompts, texts, strict=True):
        allowed = {_script(c) for c in _letters(prompt)} or {"LATIN"}
        letters = _letters(text)
        total += len(letters)
        foreign += sum(_script(c) not in allowed for c in letters)
    return foreign / total if total else float("nan")


@dataclass(frozen=True)
class RoundDiagnostics:
    """What one round (or the base model, first in a history) measured; any field may be unknown (None).

    Sample statistics come from the version's own samples on a fixed prompt set; accuracies and rewards from
    the DPO round's metrics (rewards are β·(log π − log π_ref), so negative means less likely than before).
    """

    round: str
    kl_per_token: float | None = None  # nats per token, vs the reference
    mean_length: float | None = None  # tokens
    distinct_2: float | None = None
    repeated_4gram: float | None = None  # share of samples with a repeated 4-gram
    heldout_accuracy: float | None = None
    heldout_margin: float | None = None
    train_accuracy: float | None = None
    chosen_reward: float | None = None
    rejected_reward: float | None = None
    nll: float | None = None  # mean NLL per token of its answers under the base model (fluency; lower is better)
    foreign_script: float | None = None  # share of letters in a script the prompt does not use

    def __post_init__(self):
        for name in ("distinct_2", "repeated_4gram", "heldout_accuracy", "train_accuracy", "foreign_script"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} is a share and must be in [0, 1], got {value}")


def _known(*values: float | None) -> bool:
    """True when every value is a finite number."""
    return all(v is not None and math.isfinite(v) for v in values)


def _rewards_falling(last: RoundDiagnostics) -> str | None:
    """Both implicit rewards negative: likelihood displacement."""
    if not (_known(last.chosen_reward, last.rejected_reward) and last.chosen_reward < 0 and last.rejected_reward < 0):
        return None
    return (
        f"both the chosen ({last.chosen_reward:+.2f}) and the rejected ({last.rejected_reward:+.2f}) rewards fell: "
        "the round made the answers people liked less likely too, pushing probability to text nobody labeled. "
        "Try fewer epochs or a lower learning_rate, or label_smoothing / the ipo loss."
    )


def _overfitting(last: RoundDiagnostics, prev: RoundDiagnostics | None) -> str | None:
    """Held-out accuracy flat while training accuracy runs ahead of it."""
    if not (prev and _known(last.heldout_accuracy, prev.heldout_accuracy, last.train_accuracy)):
        return None
    flat = abs(last.heldout_accuracy - prev.heldout_accuracy) < 0.02
    if not (flat and last.train_accuracy > last.heldout_accuracy + 0.1):
        return None
    return (
        f"training accuracy is {last.train_accuracy:.0%} but held-out accuracy stayed at {last.heldout_accuracy:.0%}: "
        "the round memorized its few labels rather than learning the taste. Label more pairs, or use fewer epochs."
    )


def _length_drift(last: RoundDiagnostics, prev: RoundDiagnostics | None, base: RoundDiagnostics) -> str | None:
    """Mean length up by > 25% or down to < 50%."""
    for ref in [r for r in (prev, base) if r is not None]:  # the previous round first, then the base
        if not (_known(last.mean_length, ref.mean_length) and ref.mean_length > 0):
            continue
        ratio = last.mean_length / ref.mean_length
        if ratio > 1.25:
            return (
                f"answers are {ratio - 1:.0%} longer than in {ref.round}: the labels may reward length rather than "
                "quality (check the length-bias audit). Raise beta to stay closer to the reference, or label pairs "
                "where the shorter answer is better."
            )
        if ratio < 0.5:
            return (
                f"answers are {1 - ratio:.0%} shorter than in {ref.round}: the policy may be collapsing to terse or "
                "empty answers. Raise beta, use fewer epochs, or roll back to the previous version."
            )
    return None


def _kl_jump(last: RoundDiagnostics, prev: RoundDiagnostics | None) -> str | None:
    """KL per token more than doubled, and above 0.05 nats."""
    if not (prev and _known(last.kl_per_token, prev.kl_per_token)):
        return None
    if not (last.kl_per_token > 2 * prev.kl_per_token and last.kl_per_token > 0.05):
        return None
    return (
        f"KL from the reference jumped to {last.kl_per_token:.3f} nats/token (was {prev.kl_per_token:.3f}): the "
        "policy moved far in one round. Raise beta, lower learning_rate or epochs, and compare it in the arena "
        "before serving it."
    )


def _repetition(last: RoundDiagnostics, prev: RoundDiagnostics | None, base: RoundDiagnostics) -> str | None:
    """Looping samples (more than 20% with a repeated 4-gram, and 10 points above the base's own share when it is
    known), or distinct-2 down by more than 30%."""
    usual = base.repeated_4gram if _known(base.repeated_4gram) and base is not last else 0.0
    if _known(last.repeated_4gram) and last.repeated_4gram > max(0.2, usual + 0.1):
        return (
            f"{last.repeated_4gram:.0%} of samples repeat a 4-gram (the base: {usual:.0%}): the policy is looping. "
            "Roll back to the previous version; then raise beta or use fewer epochs."
        )
    if prev and _known(last.distinct_2, prev.distinct_2) and last.distinct_2 < 0.7 * prev.distinct_2:
        return (
            f"distinct-2 fell from {prev.distinct_2:.2f} to {last.distinct_2:.2f}: answers are becoming samey. "
            "Raise beta or use fewer epochs, and label pairs on more varied prompts."
        )
    return None


FLUENCY_WARNING = 0.25  # nats per token above the base's own answers: text the base finds unusual


def _fluency(last: RoundDiagnostics, base: RoundDiagnostics) -> str | None:
    """Answers less likely under the base than its own by more than FLUENCY_WARNING nats per token, or written
    in another script."""
    if last is base:
        return None
    if _known(last.nll, base.nll) and last.nll > base.nll + FLUENCY_WARNING:
        return (
            f"its answers score {last.nll:.2f} nats/token under the base model against {base.nll:.2f} for the base's "
            "own: they read less fluently, and far above it, as gibberish. Read a few in Compare; roll back, or "
            "train with a lower learning_rate, fewer epochs or a higher rpo_alpha."
        )
    if _known(last.foreign_script, base.foreign_script) and last.foreign_script > base.foreign_script + 0.01:
        return (
            f"{last.foreign_script:.1%} of its letters are in a script the prompts do not use (the base: "
            f"{base.foreign_script:.1%}): it drifts into other languages. Roll back, or train more gently."
        )
    return None


def warnings(history: Sequence[RoundDiagnostics]) -> list[str]:
    """Plain-language warnings about the latest round in `history` (oldest first; history[0] is the base).

    Checks, each skipped when its numbers are unknown: answers' NLL per token under the base more than
    FLUENCY_WARNING above the base's own, or more than 1 point more letters in a foreign script; chosen and
    rejected rewards both below 0; held-out
    accuracy flat (change < 0.02 from the previous round) while training accuracy is > 0.1 above it; mean
    length > 25% above or < 50% of the previous round's (else the base's); KL per token > 2x the previous
    round's and > 0.05 nats; repeated-4-gram share > 0.2 and > the base's + 0.1, or distinct-2 down > 30% from
    the previous round.
    Returns one sentence per problem, prefixed with the round name, saying what it means and what to do.
    """
    if not history:
        return []
    last, base = history[-1], history[0]
    prev = history[-2] if len(history) >= 2 else None
    found = [
        _fluency(last, base),
        _rewards_falling(last),
        _overfitting(last, prev),
        _length_drift(last, prev, base),
        _kl_jump(last, prev),
        _repetition(last, prev, base),
    ]
    return [f"{last.round}: {text}" for text in found if text]
