"""DPO-family losses as pure functions over per-sequence log-probabilities.

Rafailov et al. 2023, "Direct Preference Optimization" (eq. 7); IPO: Azar et al. 2023 (eq. 17);
conservative DPO (label smoothing): Mitchell 2023, "A note on DPO with noisy preferences"; DPO-Positive (DPOP):
Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive" (eq. 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    dpop_lambda: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss and implicit rewards.

    All inputs have shape (batch,): log π(y|x) summed over completion tokens. IPO normalizes the
    log-ratios by completion length, so it needs `chosen_lengths` / `rejected_lengths` (batch,).
    dpop_lambda = λ > 0 (sigmoid and hinge): DPO-Positive, which subtracts λ·max(0, log π_ref(y_w) − log π(y_w))
    from the margin, so the loss rises as soon as the chosen answer becomes less likely than under the reference.
    Returns (losses, chosen_rewards, rejected_rewards), each (batch,); rewards are
    β·(log π − log π_ref), detached.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    delta = chosen_logratios - rejected_logratios
    if dpop_lambda:
        if loss_type == "ipo":
            raise ValueError("dpop_lambda works with loss_type 'sigmoid' or 'hinge', not 'ipo'")
        delta = delta - dpop_lambda * torch.relu(-chosen_logratios)
    if loss_type == "sigmoid":
        # label_smoothing = ε: the label is flipped with probability ε (conservative DPO).
        losses = -F.logsigmoid(beta * delta) * (1 - label_smoothing) - F.logsigmoid(-beta * delta) * label_smoothing
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("loss_type='ipo' needs chosen_lengths and rejected_lengths (completion token counts)")
        ipo_delta = chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / rejected_lengths.clamp(min=1)
        losses = (ipo_delta - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"Unknown loss_type {loss_type!r}; use 'sigmoid', 'ipo' or 'hinge'")
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return losses, chosen_rewards, rejected_rewards


def preference_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """Accuracy (share of pairs whose chosen reward is higher) and mean margin of the implicit reward."""
    margins = chosen_rewards - rejected_rewards
    return {
        "accuracy": (margins > 0).float().mean().item(),
        "margin": margins.mean().item(),
        "chosen_reward": chosen_rewards.mean().item(),
        "rejected_reward": rejected_rewards.mean().item(),
    }


def metrics_by_slice(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, slices: Sequence[str | None]
) -> dict[str, dict]:
    """`preference_metrics`' accuracy and margin per slice of the pairs, e.g. by how each pair was chosen.

    chosen_rewards, rejected_rewards: (n,); slices: n names, None for a pair in no slice (left out). Returns
    {slice: {"n", "correct" (chosen reward higher), "accuracy", "margin" (mean)}}, slices sorted by name.
    """
    if len(slices) != len(chosen_rewards):
        raise ValueError(f"one slice name per pair: got {len(slices)} names for {len(chosen_rewards)} pairs")
    margins = (chosen_rewards - rejected_rewards).tolist()
    found = {}
    for name in sorted({s for s in slices if s is not None}):
        mine = [m for m, s in zip(margins, slices, strict=True) if s == name]
        correct = sum(m > 0 for m in mine)
        found[name] = {
            "n": len(mine),
            "correct": correct,
            "accuracy": correct / len(mine),
            "margin": sum(mine) / len(mine),
        }
    return found


def kto_kl(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point (Ethayarajh et al. 2024, eq. 8): an estimate of KL(π‖π_ref).

    policy_kl_logps, ref_kl_logps: (n,) log-probs of mismatched completions (another example's answer to each
    prompt). Returns their mean log-ratio, a scalar clamped at 0 and not back-propagated, as in the paper. Take
    it over all of an optimizer step's examples, as TRL does, so that it does not depend on how the step is
    split into micro-batches or processes.
    """
    return (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024, eq. 8) for unpaired 👍 / 👎 completions.

    policy_logps, ref_logps, desirable (bool): (batch,), one completion each; kl: the scalar from `kto_kl`.
    Returns (losses (batch,), rewards (batch,) = β·log-ratio detached).
    """
    logratios = policy_logps - ref_logps
    losses = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (logratios - kl))),
        undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratios))),
    )
    return losses, beta * logratios.detach()


def kto_metrics(rewards: torch.Tensor, desirable: torch.Tensor) -> dict[str, float]:
    """Accuracy (👍 with reward > 0, 👎 with reward < 0) and the gap between mean 👍 and 👎 rewards."""
    good, bad = rewards[desirable], rewards[~desirable]
    good_mean = good.mean().item() if len(good) else 0.0
    bad_mean = bad.mean().item() if len(bad) else 0.0
    right = torch.where(desirable, rewards > 0, rewards < 0)
    return {
        "accuracy": right.float().mean().item(),
        "margin": good_mean - bad_mean,
        "chosen_reward": good_mean,
        "rejected_reward": bad_mean,
    }
