"""GRPO / SofT-GRPO scoring and loss (ARCHITECTURE.md §10).

- :func:`step_scores` runs the policy over prompt + answer with the *same* input embeddings the rollout fed
  (rebuilt, detached, from the stored ids and g') and returns one score per generated step: the token log-prob for a
  discrete step, the Gumbel-reparameterised log-density of the recorded g' for a soft step.
- :func:`gumbel_log_density` is that density: mean over kept slots of ``-eps - exp(-eps)`` with
  ``eps = clip(g'_i - log(pi~(i) + 1e-6), lo, hi)`` and ``pi~`` the policy renormalised over the kept slots.
- :func:`grpo_advantages`, :func:`policy_loss` give the group-normalised advantages and the PPO clipped (dual-clip)
  token-mean objective with a k3 KL term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tradelab.grpo.local.rollout import Q_EPS, RolloutBatch, soft_embedding

ADV_EPS = 1e-6
"""The constant in (R - mean) / (std + eps)."""


def grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(R - mean_group) / (std_group + 1e-6) for rewards laid out group after group.

    Args:
        rewards: ``[G * n]`` rewards, the n answers of each prompt contiguous.
        group_size: n.

    Returns:
        ``[G * n]`` advantages (zero for a group whose rewards are all equal).
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.float().view(-1, group_size)
    mean = grouped.mean(-1, keepdim=True)
    std = grouped.std(-1, unbiased=True, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    return ((grouped - mean) / (std + ADV_EPS)).view(-1)


def gumbel_log_density(
    slot_logprobs: torch.Tensor, noisy_logits: torch.Tensor, slot_mask: torch.Tensor, lo: float, hi: float
) -> torch.Tensor:
    """Log-density of recorded noisy logits g' under the policy, averaged over the kept slots.

    Args:
        slot_logprobs: ``[..., K]`` log pi_theta of the slot ids (any normalisation; renormalised here).
        noisy_logits: ``[..., K]`` the recorded g'.
        slot_mask: ``[..., K]`` kept slots.
        lo: Lower clip of eps.
        hi: Upper clip of eps.

    Returns:
        ``[...]`` the per-step score (0 where no slot is kept).
    """
    neg_inf = torch.full_like(slot_logprobs, float("-inf"))
    kept = torch.where(slot_mask, slot_logprobs, neg_inf)
    norm = torch.logsumexp(kept, dim=-1, keepdim=True)
    norm = torch.where(torch.isfinite(norm), norm, torch.zeros_like(norm))
    renorm_prob = torch.exp(kept - norm)
    eps = (noisy_logits - torch.log(renorm_prob + Q_EPS)).clamp(lo, hi)
    per_slot = torch.where(slot_mask, -eps - torch.exp(-eps), torch.zeros_like(eps))
    count = slot_mask.sum(-1).clamp(min=1)
    return per_slot.sum(-1) / count


def rebuild_inputs(
    embed: torch.nn.Module, batch: RolloutBatch, tau: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The detached input embeddings, attention mask and positions the rollout fed, as one full sequence.

    The sequence is prompt + the inputs that followed answer steps 0..L-2; its last P-1.. positions predict steps
    0..L-1.
    """
    with torch.no_grad():
        prompt_emb = embed(batch.prompt_ids)
        after = embed(batch.tokens[:, :-1])
        if bool(batch.mix[:, :-1].any()):
            mixed = soft_embedding(
                embed, batch.slot_ids[:, :-1], batch.noisy_logits[:, :-1], batch.slot_mask[:, :-1], tau
            ).to(after.dtype)
            after = torch.where(batch.mix[:, :-1, None], mixed, after)
        embeds = torch.cat([prompt_emb, after], dim=1).detach()
    attn = torch.cat([batch.prompt_mask, batch.mask[:, :-1]], dim=1)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    return embeds, attn, positions


@dataclass(frozen=True)
class ScoreSpec:
    """Settings the step scores depend on (must equal the rollout's)."""

    temperature: float
    gumbel_tau: float
    noise_min: float
    noise_max: float


def step_scores(model: torch.nn.Module, batch: RolloutBatch, spec: ScoreSpec) -> torch.Tensor:
    """Per-step scores ``[B, L]`` (float32): token log-prob on discrete steps, Gumbel log-density on soft steps."""
    embeds, attn, positions = rebuild_inputs(model.get_input_embeddings(), batch, spec.gumbel_tau)
    answer_len = batch.tokens.shape[1]
    # The last answer_len positions (prompt end .. answer end - 1) predict the answer steps; skip the prompt's head.
    out = model(inputs_embeds=embeds, attention_mask=attn, position_ids=positions, use_cache=False,
                logits_to_keep=answer_len)
    logits = out.logits.float() / spec.temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    token_lp = logprobs.gather(-1, batch.tokens[..., None]).squeeze(-1)
    if not bool(batch.soft.any()):
        return token_lp
    slot_lp = logprobs.gather(-1, batch.slot_ids)
    soft_lp = gumbel_log_density(slot_lp, batch.noisy_logits, batch.slot_mask, spec.noise_min, spec.noise_max)
    return torch.where(batch.soft, soft_lp, token_lp)


@dataclass(frozen=True)
class LossSpec:
    """PPO / KL settings."""

    clip_eps: float
    dual_clip: float
    kl_coef: float


def policy_loss(
    scores: torch.Tensor,
    old_scores: torch.Tensor,
    ref_scores: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    spec: LossSpec,
    token_total: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped (dual-clip) objective plus k3 KL, summed over ``mask`` and divided by ``token_total``.

    Dividing every micro-batch by the whole batch's token count makes accumulated gradients equal the token mean.

    Args:
        scores: ``[B, L]`` current per-step scores (with grad).
        old_scores: ``[B, L]`` scores before the update.
        ref_scores: ``[B, L]`` reference scores, or None when the KL term is off.
        advantages: ``[B]`` sequence advantages.
        mask: ``[B, L]`` generated steps.
        spec: Clip and KL settings.
        token_total: Generated steps in the whole batch (all micro-batches).

    Returns:
        ``(loss, sums)``: the scalar loss and detached sums (clipped tokens, KL, pg loss) for logging.
    """
    maskf = mask.float()
    adv = advantages.float()[:, None]
    ratio = torch.exp(scores - old_scores)
    loss_plain = -adv * ratio
    loss_clip = -adv * ratio.clamp(1.0 - spec.clip_eps, 1.0 + spec.clip_eps)
    pg = torch.maximum(loss_plain, loss_clip)
    pg = torch.where(adv < 0, torch.minimum(pg, -adv * spec.dual_clip), pg)
    per_step = pg
    kl = torch.zeros_like(pg)
    if ref_scores is not None and spec.kl_coef > 0:
        log_ratio = (ref_scores - scores).clamp(-20.0, 20.0)
        kl = (torch.exp(log_ratio) - log_ratio - 1.0).clamp(-10.0, 10.0)
        per_step = pg + spec.kl_coef * kl
    loss = (per_step * maskf).sum() / token_total
    clipped = ((loss_clip > loss_plain).float() * maskf).sum()
    sums = {
        "pg": (pg * maskf).sum().detach(),
        "kl": (kl * maskf).sum().detach(),
        "clipped": clipped.detach(),
        "tokens": maskf.sum().detach(),
    }
    return loss, sums
