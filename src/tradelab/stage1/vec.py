"""Assembling the Stage 1 vector env stack: envs -> :class:`AdviceVecEnv` -> :class:`SlotPreservingVecNormalize`.

Training, evaluation (:class:`~tradelab.stage1.agent.HybridAgent`), the tests and the benchmark all build the same
stack through these helpers, so triggers, veto and slot filling are identical everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from tradelab.stage1.advice_wrapper import AdviceVecEnv, PolicyProbe
from tradelab.stage1.experience import ExperienceRecorder
from tradelab.stage1.source import AdviceSource
from tradelab.stage1.triggers import TriggerRules
from tradelab.stage1.vecnorm import SlotPreservingVecNormalize
from tradelab.stage1.veto import VetoRules


def trigger_rules(stage1: Any, *, interval_bars: int | None = None) -> TriggerRules:
    """Trigger rules from a ``stage1`` config section (``interval_bars`` overrides the configured interval)."""
    query = stage1.query
    return TriggerRules(
        interval_bars=int(interval_bars if interval_bars is not None else query.interval_bars),
        on_position_change=bool(query.on_position_change),
        entropy_threshold=float(query.entropy_threshold),
        cooldown_bars=int(query.cooldown_bars),
        skip_single_action=bool(query.skip_single_action),
        only_when_entries_allowed=bool(query.only_when_entries_allowed),
    )


def advice_vec_env(
    env_fns: Sequence[Callable[[], Any]],
    stage1: Any,
    *,
    source: AdviceSource | None,
    recorder: ExperienceRecorder | None = None,
    interval_bars: int | None = None,
) -> AdviceVecEnv:
    """A :class:`DummyVecEnv` of ``env_fns`` under the advice wrapper configured from ``stage1``."""
    return AdviceVecEnv(
        DummyVecEnv(list(env_fns)),
        source=source,
        triggers=trigger_rules(stage1, interval_bars=interval_bars),
        veto=VetoRules.from_config(stage1.veto),
        advice_ttl_bars=stage1.query.advice_ttl_bars,
        recorder=recorder,
    )


def normalized(advice_env: AdviceVecEnv, ppo: Any, *, training: bool = True) -> SlotPreservingVecNormalize:
    """Observation (and optionally reward) normalisation that leaves the advisor slots raw."""
    return SlotPreservingVecNormalize(
        advice_env, norm_obs=True, norm_reward=bool(ppo.normalize_reward), clip_obs=float(ppo.clip_obs),
        gamma=float(ppo.gamma), training=training,
    )


def make_probe(policy: Any, vecnorm: SlotPreservingVecNormalize | None) -> PolicyProbe:
    """``(raw_obs, masks) -> (normalised entropy, argmax)`` of the policy's own distribution (no prior, no sampling).

    The entropy is divided by ``log(allowed actions)``, so 1 means uniform over what the mask allows whatever the
    mask's size, and a single allowed action gives 0.

    Args:
        policy: A :class:`~tradelab.stage1.policy.FusionPolicy` (any MaskableActorCriticPolicy works: its
            ``get_distribution`` is used when it has no ``base_distribution``).
        vecnorm: Normalises the raw observation the way the policy sees it (statistics are not updated).
    """

    def probe(raw_obs: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = vecnorm.normalize_obs(raw_obs) if vecnorm is not None else raw_obs
        with th.no_grad():
            obs_t = th.as_tensor(np.asarray(obs), dtype=th.float32, device=policy.device)
            getter = getattr(policy, "base_distribution", policy.get_distribution)
            dist = getter(obs_t, masks).distribution
            entropy = dist.entropy().cpu().numpy()
            argmax = dist.probs.argmax(dim=-1).cpu().numpy()
        n_allowed = np.asarray(masks, dtype=bool).reshape(len(entropy), -1).sum(axis=1)
        scale = np.log(np.maximum(n_allowed, 2))
        return np.where(n_allowed > 1, entropy / scale, 0.0), argmax

    return probe
