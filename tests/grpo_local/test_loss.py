"""GRPO advantages, the PPO clipped / dual-clip objective, k3 KL and the Gumbel log-density against hand math."""

from __future__ import annotations

import math

import pytest
import torch

from tradelab.grpo.local.loss import LossSpec, grpo_advantages, gumbel_log_density, policy_loss

SPEC = LossSpec(clip_eps=0.2, dual_clip=3.0, kl_coef=0.0)


def test_advantages_are_group_normalised_by_hand() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0])
    adv = grpo_advantages(rewards, group_size=4)
    std = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # unbiased std of 1..4
    expected = [(r - 2.5) / (std + 1e-6) for r in (1.0, 2.0, 3.0, 4.0)] + [0.0] * 4
    assert adv.tolist() == pytest.approx(expected, rel=1e-6)


def test_advantages_reject_a_partial_group() -> None:
    with pytest.raises(ValueError, match="groups of 4"):
        grpo_advantages(torch.zeros(6), group_size=4)


def _one_token_loss(ratio: float, adv: float, spec: LossSpec = SPEC) -> tuple[float, float]:
    """Loss and d loss / d score for one token with the given ratio and advantage."""
    scores = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, _ = policy_loss(scores, torch.zeros(1, 1), None, torch.tensor([adv]), torch.ones(1, 1), spec, 1.0)
    loss.backward()
    return float(loss.detach()), float(scores.grad[0, 0])


@pytest.mark.parametrize(
    ("ratio", "adv", "expected_loss", "has_grad"),
    [
        (1.1, 2.0, -2.0 * 1.1, True),    # inside the clip range: plain ratio
        (1.5, 2.0, -2.0 * 1.2, False),   # positive advantage, ratio above 1+eps: clipped, no gradient
        (0.5, 2.0, -2.0 * 0.5, True),    # positive advantage, ratio below 1-eps: the unclipped term is larger
        (0.5, -1.0, 1.0 * 0.8, False),   # negative advantage, ratio below 1-eps: clipped at 0.8
        (2.0, -1.0, 1.0 * 2.0, True),    # negative advantage, 1.2 < ratio < 3: plain ratio
        (5.0, -1.0, 1.0 * 3.0, False),   # negative advantage, ratio above the dual clip: bounded by 3|A|
    ],
)
def test_ppo_clip_and_dual_clip(ratio: float, adv: float, expected_loss: float, has_grad: bool) -> None:
    loss, grad = _one_token_loss(ratio, adv)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert (abs(grad) > 1e-8) == has_grad


def test_token_mean_over_mask_and_batch_total() -> None:
    scores = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([1.0, -2.0])
    loss, sums = policy_loss(scores, torch.zeros(2, 3), None, adv, mask, SPEC, token_total=3.0)
    # ratio 1 everywhere: per-token loss is -A; tokens: two of row 0 (A=1), one of row 1 (A=-2)
    assert float(loss) == pytest.approx((-1.0 - 1.0 + 2.0) / 3.0)
    assert float(sums["tokens"]) == 3.0
    half, _ = policy_loss(scores, torch.zeros(2, 3), None, adv, mask, SPEC, token_total=6.0)
    assert float(half) == pytest.approx(float(loss) / 2)


def test_k3_kl_by_hand() -> None:
    spec = LossSpec(clip_eps=0.2, dual_clip=3.0, kl_coef=0.5)
    scores = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.0, -1.5]])
    loss, sums = policy_loss(scores, scores.clone(), ref, torch.tensor([0.0]), torch.ones(1, 2), spec, 2.0)
    d = 0.5  # ref - current on the second token; the first has no divergence
    expected_kl = math.exp(d) - d - 1.0
    assert float(sums["kl"]) == pytest.approx(expected_kl, rel=1e-6)
    assert float(loss) == pytest.approx(0.5 * expected_kl / 2.0, rel=1e-6)


def test_gumbel_log_density_matches_hand_computation() -> None:
    # Policy probabilities of 4 slots (mass outside the slots is 0.2); slot 3 was dropped by top-p.
    probs = [0.4, 0.25, 0.15, 0.0001]
    noisy = [-0.3, 1.2, -4.0, 0.7]
    kept = [True, True, True, False]
    got = gumbel_log_density(torch.log(torch.tensor(probs)), torch.tensor(noisy), torch.tensor(kept), -1.5, 3.0)

    total = sum(p for p, k in zip(probs, kept) if k)
    terms = []
    for p, g, k in zip(probs, noisy, kept):
        if not k:
            continue
        eps = g - math.log(p / total + 1e-6)
        eps = min(max(eps, -1.5), 3.0)  # slot 2: -4.0 - log(0.1875) = -2.33 -> clipped to -1.5
        terms.append(-eps - math.exp(-eps))
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_gumbel_log_density_gradient_moves_policy_towards_recorded_noise() -> None:
    # Raising a slot's probability lowers its eps; the density's gradient must point somewhere (not be detached).
    logits = torch.tensor([0.0, 0.0, 0.0], requires_grad=True)
    score = gumbel_log_density(torch.log_softmax(logits, -1), torch.tensor([1.0, -1.0, -1.0]),
                               torch.tensor([True, True, True]), -1.5, 3.0)
    score.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0
    assert float(logits.grad[0]) > 0  # the slot with the large recorded g' wants more probability
