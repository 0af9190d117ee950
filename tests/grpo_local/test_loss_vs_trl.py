"""Our GRPO loss against TRL's own ``GRPOTrainer._compute_loss`` on one fixed batch: loss and gradients to 1e-5.

TRL's loss is a method of the trainer. It is called unbound here with a stand-in ``self`` that carries only what
the method reads (loss type, beta, epsilon, delta, the accelerator's gather/reduce as identities for one process, no
gradient accumulation), and whose ``_get_per_token_logps_and_entropies`` returns the same differentiable per-token
log-probs our loss gets, so both sides differentiate the same tensor.

How the settings map (ours: :func:`tradelab.grpo.local.loss.policy_loss`):

- clip epsilon ``clip_eps`` = TRL ``epsilon`` (= ``epsilon_high``); our ``dual_clip`` = TRL ``delta`` (the bound on
  the ratio of negative-advantage tokens); our ``kl_coef`` = TRL ``beta`` (both the k3 estimator to the reference).
- normalisation: ours divides the masked sum by ``token_total``. With the batch's token count (what the engine
  passes) it is TRL's ``bnpo`` (and ``dapo`` on one process); with ``batch size x max_completion_length`` it is
  TRL's ``dr_grpo``. TRL's ``grpo`` (each answer's token mean, then the mean over answers) equals ours only when
  every answer has the same length; with ragged answers it weights short answers' tokens more, and ours does not.
- not compared here: TRL's group advantages divide by ``std + 1e-4``, ours by ``std + 1e-6`` (both the unbiased std).
"""

from __future__ import annotations

import types
from collections import defaultdict
from typing import Any

import pytest
import torch
from trl.trainer import grpo_trainer as trl_grpo

from tradelab.grpo.local.loss import LossSpec, policy_loss

BATCH, LENGTH, VOCAB = 6, 5, 11
MAX_COMPLETION = 7
CLIP, DUAL_CLIP, BETA = 0.2, 3.0, 0.04


def _batch(ragged: bool) -> dict[str, torch.Tensor]:
    """Fixed logits (the differentiable leaf), tokens, mask, old/ref log-probs and advantages."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(BATCH, LENGTH, VOCAB, generator=gen)
    tokens = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=gen)
    lengths = torch.tensor([5, 3, 4, 5, 2, 1] if ragged else [LENGTH] * BATCH)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    current = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    # Old log-probs put ratios everywhere: inside the clip, below 1-eps, above 1+eps and above the dual clip (x4).
    shift = torch.tensor([0.0, 0.1, -0.1, 0.5, -0.5, 1.386])[torch.randint(0, 6, (BATCH, LENGTH), generator=gen)]
    shift[1, 0], shift[3, 2], shift[0, 0] = 1.386, -0.5, 0.5  # negative advantage past the dual clip and below 1-eps
    old = current - shift
    ref = current + 0.3 * torch.randn(BATCH, LENGTH, generator=gen)
    advantages = torch.tensor([1.2, -0.7, 0.4, -1.5, 0.9, -0.3])
    return {"logits": logits, "tokens": tokens, "mask": mask, "old": old, "ref": ref, "advantages": advantages}


def _logps(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)


def _trl(loss_type: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's loss and the gradient on the logits."""
    logits = batch["logits"].clone().requires_grad_(True)
    logps = _logps(logits, batch["tokens"])
    standin = types.SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        importance_sampling_level="token", loss_type=loss_type, beta=BETA, epsilon_low=CLIP, epsilon_high=CLIP,
        args=types.SimpleNamespace(delta=DUAL_CLIP, use_bias_correction_kl=False, steps_per_generation=1),
        use_vllm=False, vllm_importance_sampling_correction=False, model=types.SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=MAX_COMPLETION, _entropy_bonus_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=types.SimpleNamespace(gather=lambda x: x, reduce=lambda x, reduction="sum": x, num_processes=1),
    )
    mask = batch["mask"]
    inputs = {
        "prompt_ids": torch.zeros(BATCH, 1, dtype=torch.long), "prompt_mask": torch.ones(BATCH, 1, dtype=torch.long),
        "completion_ids": batch["tokens"], "completion_mask": mask, "advantages": batch["advantages"],
        "old_per_token_logps": batch["old"], "ref_per_token_logps": batch["ref"],
        "num_items_in_batch": mask.sum().float(),
    }
    loss = trl_grpo.GRPOTrainer._compute_loss(standin, None, inputs)
    loss.backward()
    return loss.detach(), logits.grad


def _ours(token_total: float, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = batch["logits"].clone().requires_grad_(True)
    spec = LossSpec(clip_eps=CLIP, dual_clip=DUAL_CLIP, kl_coef=BETA)
    loss, _ = policy_loss(_logps(logits, batch["tokens"]), batch["old"], batch["ref"], batch["advantages"],
                          batch["mask"], spec, token_total)
    loss.backward()
    return loss.detach(), logits.grad


def _assert_same(ours: tuple[torch.Tensor, torch.Tensor], theirs: tuple[torch.Tensor, Any]) -> None:
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-5, rtol=1e-5)
    assert float(theirs[1].abs().sum()) > 0


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo"])
def test_token_mean_over_the_batch_is_trl_bnpo_and_dapo(loss_type: str) -> None:
    batch = _batch(ragged=True)
    _assert_same(_ours(float(batch["mask"].sum()), batch), _trl(loss_type, batch))


def test_dr_grpo_is_ours_normalised_by_batch_times_max_completion_length() -> None:
    batch = _batch(ragged=True)
    _assert_same(_ours(float(BATCH * MAX_COMPLETION), batch), _trl("dr_grpo", batch))
    # What the engine passes (the token count) is not dr_grpo: the settings, not the formula, make them equal.
    assert not torch.allclose(_ours(float(batch["mask"].sum()), batch)[0], _trl("dr_grpo", batch)[0], atol=1e-4)


def test_grpo_equals_ours_only_when_every_answer_has_the_same_length() -> None:
    equal = _batch(ragged=False)
    _assert_same(_ours(float(equal["mask"].sum()), equal), _trl("grpo", equal))
    ragged = _batch(ragged=True)
    ours, theirs = _ours(float(ragged["mask"].sum()), ragged), _trl("grpo", ragged)
    assert not torch.allclose(ours[0], theirs[0], atol=1e-4)  # per-answer mean vs token mean: deliberate


def test_the_batch_reaches_every_clip_region() -> None:
    """The fixed batch is a real test of the clipping: ratios below 1-eps, above 1+eps and above the dual clip."""
    batch = _batch(ragged=True)
    ratio = torch.exp(_logps(batch["logits"], batch["tokens"]) - batch["old"])
    adv = batch["advantages"][:, None].expand_as(ratio)
    on = batch["mask"].bool()
    assert bool(((ratio > 1 + CLIP) & (adv > 0) & on).any()) and bool(((ratio < 1 - CLIP) & (adv < 0) & on).any())
    assert bool(((ratio > DUAL_CLIP) & (adv < 0) & on).any())
