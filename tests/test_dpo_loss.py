"""The DPO-family losses on hand-made tensors."""

import math

import pytest
import torch

from training.loss import dpo_loss, preference_metrics


def test_equal_policy_and_reference_give_ln2():
    logps = torch.tensor([-5.0, -3.0, -9.0])
    losses, chosen, rejected = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1)
    assert torch.allclose(losses, torch.full((3,), math.log(2)), atol=1e-7)
    assert torch.equal(chosen, torch.zeros(3)) and torch.equal(rejected, torch.zeros(3))


def test_sigmoid_loss_matches_the_paper_formula():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-4.0, -6.0, -5.0, -5.5))
    beta = 0.5
    expected = -math.log(1 / (1 + math.exp(-beta * ((-4.0 + 5.0) - (-6.0 + 5.5)))))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta)
    assert losses.item() == pytest.approx(expected, rel=1e-6)
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.25)


def test_dpo_positive_penalizes_only_a_chosen_answer_that_lost_likelihood():
    beta, lam = 0.5, 5.0
    # the chosen answer 2 nats less likely than under the reference: the margin loses lam * 2
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-7.0, -9.0, -5.0, -5.5))
    losses, chosen, _ = dpo_loss(pc, pr, rc, rr, beta=beta, dpop_lambda=lam)
    delta = (-7.0 + 5.0) - (-9.0 + 5.5) - lam * 2.0
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-beta * delta))), rel=1e-6)
    assert chosen.item() == pytest.approx(-1.0), "the rewards stay DPO's"
    # chosen above the reference: exactly DPO
    pc = torch.tensor([-4.0])
    assert torch.equal(dpo_loss(pc, pr, rc, rr, beta=beta, dpop_lambda=lam)[0], dpo_loss(pc, pr, rc, rr, beta=beta)[0])
    with pytest.raises(ValueError, match="dpop_lambda works with loss_type 'sigmoid' or 'hinge'"):
        dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="ipo", dpop_lambda=lam, chosen_lengths=pc, rejected_lengths=pc)


def test_label_smoothing_mixes_both_directions():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.0))
    plain, _, _ = dpo_loss(pc, pr, rc, rr, beta=1.0)
    flipped, _, _ = dpo_loss(pr, pc, rr, rc, beta=1.0)
    smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=1.0, label_smoothing=0.2)
    assert smoothed.item() == pytest.approx(0.8 * plain.item() + 0.2 * flipped.item(), rel=1e-6)


def test_hinge_is_zero_beyond_the_margin():
    losses, _, _ = dpo_loss(
        torch.tensor([0.0, 0.0]), torch.tensor([-20.0, -0.5]), torch.zeros(2), torch.zeros(2), 0.1, "hinge"
    )
    assert losses[0].item() == 0.0 and losses[1].item() == pytest.approx(1 - 0.05)


def test_ipo_normalizes_by_length_and_needs_lengths():
    args = (torch.tensor([-2.0]), torch.tensor([-4.0]), torch.tensor([-3.0]), torch.tensor([-3.0]))
    with pytest.raises(ValueError, match="chosen_lengths"):
        dpo_loss(*args, beta=0.1, loss_type="ipo")
    losses, _, _ = dpo_loss(
        *args, beta=0.1, loss_type="ipo", chosen_lengths=torch.tensor([2.0]), rejected_lengths=torch.tensor([4.0])
    )
    assert losses.item() == pytest.approx((0.5 - (-0.25) - 5.0) ** 2)


def test_unknown_loss_type_is_refused():
    with pytest.raises(ValueError, match="Unknown loss_type"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=0.1, loss_type="kto")


def test_preference_metrics_count_strict_wins():
    metrics = preference_metrics(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0]))
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics["margin"] == pytest.approx(0.0)


def test_kto_starts_at_one_half_and_rewards_follow_the_labels():
    from training.loss import kto_kl, kto_loss, kto_metrics

    logps = torch.tensor([-3.0, -4.0, -5.0])
    desirable = torch.tensor([True, False, True])
    kl = kto_kl(logps, logps)
    losses, rewards = kto_loss(logps, logps, desirable, kl, beta=0.1)
    assert torch.allclose(losses, torch.full((3,), 0.5)) and kl.item() == 0.0
    policy = torch.tensor([-2.0, -6.0, -5.0])  # 👍 up, 👎 down, 👍 unchanged
    losses, rewards = kto_loss(policy, logps, desirable, kl, beta=1.0)
    assert losses[0] < 0.5 and losses[1] < 0.5 and losses[2] == pytest.approx(0.5)
    assert rewards.tolist() == pytest.approx([1.0, -2.0, 0.0])
    metrics = kto_metrics(rewards, desirable)
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["margin"] == pytest.approx(0.5 - (-2.0))


def test_kto_kl_estimate_is_clamped_and_shifts_the_reference_point():
    from training.loss import kto_kl, kto_loss

    logps, desirable = torch.tensor([-3.0]), torch.tensor([True])
    kl_below = kto_kl(torch.tensor([-9.0]), torch.tensor([-3.0]))
    kl_above = kto_kl(torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -4.0]))
    assert kl_below.item() == 0.0 and kl_above.item() == pytest.approx(2.0)
    below, _ = kto_loss(logps, logps, desirable, kl_below, beta=1.0)
    above, _ = kto_loss(logps, logps, desirable, kl_above, beta=1.0)
    assert below.item() == pytest.approx(0.5) and above.item() == pytest.approx(1 - 1 / (1 + math.exp(2.0)))
