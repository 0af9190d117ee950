"""The fusion policy: MaskablePPO whose distribution is ``softmax(masked_logits + llm_weight · log(prior))``.

The prior is a function of the observation's raw advisor slots and the action mask only, so the log-probability
stored during the rollout and the one re-evaluated during the update come from the same distribution: PPO stays
on-policy and no sampled action is ever replaced. With ``llm_weight == 0`` every method runs exactly the parent's
operations (bit-identical to plain MaskablePPO).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

from tradelab.stage1.advice import BUY_ID, HAS_ADVICE_INDEX, HOLD_ID, N_ACTIONS, PRIOR_EPS, SELL_ID, SLOT_SIZE

MaskLike = th.Tensor | np.ndarray | None


def log_prior(slots: th.Tensor, masks: th.Tensor, confidence_floor: float) -> th.Tensor:
    """log(prior) for a batch of raw slot vectors.

    The advised action gets its confidence; the rest ``1 - confidence`` is spread evenly over the other allowed
    actions. No advice, advice below ``confidence_floor``, advice for a masked action, or HOLD while an entry is
    allowed gives the uniform prior over allowed actions (no effect on the policy).

    HOLD while flat is an abstention, not a view: the account is already doing nothing, and an advisor that mostly
    says "no setup" would otherwise pull every entry toward HOLD and stop the fused policy from trading at all.

    Args:
        slots: ``(n, SLOT_SIZE)`` raw slot values.
        masks: ``(n, N_ACTIONS)`` booleans, True = allowed.
        confidence_floor: Minimum confidence that counts as advice.

    Returns:
        ``(n, N_ACTIONS)`` log-probabilities; masked actions get ``log(PRIOR_EPS)`` (the mask removes them anyway).
    """
    onehot = slots[:, :N_ACTIONS]
    conf, advised = onehot.max(dim=1)
    masks_f = masks.to(slots.dtype)
    n_allowed = masks_f.sum(dim=1)
    advised_allowed = masks.gather(1, advised.unsqueeze(1)).squeeze(1)
    abstains = (advised == HOLD_ID) & (masks[:, BUY_ID] | masks[:, SELL_ID])
    usable = ((slots[:, HAS_ADVICE_INDEX] > 0.5) & (conf >= confidence_floor) & advised_allowed & (n_allowed > 1)
              & ~abstains)
    c = conf.clamp(PRIOR_EPS, 1.0 - PRIOR_EPS)
    other = (1.0 - c) / (n_allowed - 1.0).clamp(min=1.0)
    is_advised = th.nn.functional.one_hot(advised, N_ACTIONS).to(th.bool)
    advised_prior = th.where(is_advised, c.unsqueeze(1), other.unsqueeze(1)) * masks_f
    uniform = masks_f / n_allowed.clamp(min=1.0).unsqueeze(1)
    prior = th.where(usable.unsqueeze(1), advised_prior, uniform)
    return th.log(prior.clamp(min=PRIOR_EPS))


class FusionPolicy(MaskableActorCriticPolicy):
    """MaskableActorCriticPolicy with the advisor prior added to its logits.

    Args:
        *args: Passed to :class:`MaskableActorCriticPolicy`.
        llm_weight: Weight of ``log(prior)``; 0 makes this exactly the parent policy.
        confidence_floor: Advice below this confidence is treated as no advice.
        **kwargs: Passed to :class:`MaskableActorCriticPolicy`.
    """

    def __init__(self, *args: Any, llm_weight: float = 0.0, confidence_floor: float = 0.0, **kwargs: Any) -> None:
        self.llm_weight = float(llm_weight)
        self.confidence_floor = float(confidence_floor)
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(llm_weight=self.llm_weight, confidence_floor=self.confidence_floor)
        return data

    def _fused_distribution(self, latent_pi: th.Tensor, obs: th.Tensor, action_masks: MaskLike) -> MaskableDistribution:
        logits = self.action_net(latent_pi)
        if self.llm_weight != 0.0:
            logits = logits + self.llm_weight * self.advice_log_prior(obs, action_masks)
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    def advice_log_prior(self, obs: th.Tensor, action_masks: MaskLike) -> th.Tensor:
        """log(prior) from the raw advisor slots (the last :data:`SLOT_SIZE` floats of each observation)."""
        flat = obs.reshape(obs.shape[0], -1).float()
        slots = flat[:, -SLOT_SIZE:]
        if action_masks is None:
            masks = th.ones((flat.shape[0], N_ACTIONS), dtype=th.bool, device=flat.device)
        else:
            masks = th.as_tensor(action_masks, dtype=th.bool, device=flat.device).reshape(-1, N_ACTIONS)
        return log_prior(slots, masks, self.confidence_floor).to(flat.dtype)

    def _latents(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def forward(
        self, obs: th.Tensor, deterministic: bool = False, action_masks: np.ndarray | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Sample (or pick) actions from the fused distribution; return actions, values, log-probs."""
        latent_pi, latent_vf = self._latents(obs)
        values = self.value_net(latent_vf)
        distribution = self._fused_distribution(latent_pi, obs, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        return actions, values, log_prob

    def evaluate_actions(
        self, obs: th.Tensor, actions: th.Tensor, action_masks: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probs and entropy of ``actions`` under the fused distribution (the PPO update's view)."""
        latent_pi, latent_vf = self._latents(obs)
        distribution = self._fused_distribution(latent_pi, obs, action_masks)
        log_prob = distribution.log_prob(actions)
        values = self.value_net(latent_vf)
        return values, log_prob, distribution.entropy()

    def get_distribution(self, obs: th.Tensor, action_masks: np.ndarray | None = None) -> MaskableDistribution:
        """The fused, masked action distribution (used by ``predict``)."""
        features = super(MaskableActorCriticPolicy, self).extract_features(obs, self.pi_features_extractor)
        latent_pi = self.mlp_extractor.forward_actor(features)
        return self._fused_distribution(latent_pi, obs, action_masks)

    def base_distribution(self, obs: th.Tensor, action_masks: MaskLike = None) -> MaskableDistribution:
        """The policy's own masked distribution, without the advisor prior (its uncertainty drives queries)."""
        features = super(MaskableActorCriticPolicy, self).extract_features(obs, self.pi_features_extractor)
        latent_pi = self.mlp_extractor.forward_actor(features)
        distribution = self._get_action_dist_from_latent(latent_pi)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution
