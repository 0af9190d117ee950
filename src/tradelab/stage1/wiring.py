"""Building the pieces of a Stage 1 run from config: settings, advisor + adapter, recorder, the vector env stack and
the PPO model.

The env stack is envs -> :class:`AdviceVecEnv` -> :class:`SlotPreservingVecNormalize`. Training, evaluation
(:class:`~tradelab.stage1.agent.HybridAgent`), the tests and the benchmark all build it through these helpers, so
triggers, veto and slot filling are identical everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from tradelab.paths import Workspace
from tradelab.stage1.advice import AdviceSource, AdviceVecEnv, PolicyProbe
from tradelab.stage1.triggers import TriggerRules, VetoRules
from tradelab.stage1.experience import ExperienceRecorder
from tradelab.stage1.vecnorm import SlotPreservingVecNormalize

log = logging.getLogger(__name__)

WARM_ADAPTER_DIR = "stage1_warm_lora"
REFINING_ADAPTER_DIR = "stage1_lora_refining"
"""Where a running Stage 1 keeps its refined adapter (and the experience records name it); ``stage1_lora`` is replaced
by the last refinement only when the run completes, so a run that fails or is killed leaves the last completed run's
adapter in place. ``--resume`` continues from here; a fresh run clears it."""
"""Folder under ``models/phase3_hybrid/<MKT>/`` holding the warm-started adapter that refinement starts from."""


@dataclass(frozen=True)
class RunSettings:
    """The effective Stage 1 settings after test-mode overrides."""

    n_envs: int
    n_steps: int
    batch_size: int
    n_epochs: int
    net_arch: dict[str, list[int]]
    total_timesteps: int
    checkpoint_every_steps: int
    interval_bars: int
    refinement_every_steps: int
    refinement_min_records: int
    refinement_recent_records: int
    refinement_epochs: int


def run_settings(config: Any, *, total_timesteps: int | None) -> RunSettings:
    """The run's ``ppo`` and ``stage1`` settings from a resolved config (its run profile laid over it by
    :func:`tradelab.config.load_config`); ``total_timesteps`` wins."""
    if total_timesteps is not None and (isinstance(total_timesteps, bool) or int(total_timesteps) < 1):
        from tradelab.errors import ConfigError

        raise ConfigError(f"total_timesteps = {total_timesteps!r}: must be a whole number of at least 1 "
                          f"(leave it out for the configured value)")
    ppo, refinement = config.ppo, config.stage1.refinement
    return RunSettings(
        n_envs=ppo.n_envs,
        n_steps=ppo.n_steps,
        batch_size=ppo.batch_size,
        n_epochs=ppo.n_epochs,
        net_arch={"pi": list(ppo.net_arch.pi), "vf": list(ppo.net_arch.vf)},
        total_timesteps=int(total_timesteps if total_timesteps is not None else ppo.total_timesteps),
        checkpoint_every_steps=ppo.checkpoint_every_steps,
        interval_bars=config.stage1.query.interval_bars,
        refinement_every_steps=refinement.every_steps,
        refinement_min_records=refinement.min_records,
        refinement_recent_records=refinement.recent_records,
        refinement_epochs=refinement.epochs,
    )


@dataclass
class AdvisorBundle:
    """The loaded advisor and where its adapter came from."""

    advisor: Any
    base_dir: Path
    adapter_path: Path


def initial_adapter(root: Path, market: str, config: Any, *, seed: int, resume: bool) -> Path:
    """The adapter Stage 1 starts from.

    ``llm.adapter_path`` when set; on resume the adapter the interrupted run last refined, else the last
    ``stage1_lora``; else the market's warm-started adapter, created with :func:`tradelab.advisor.train.warm_start`
    when missing or trained on another base (its ``tradelab_adapter.json`` records the base's sha256).
    """
    from tradelab.advisor.load import resolve_adapter_dir
    from tradelab.advisor.train import adapter_base_matches, warm_start

    ws = Workspace.at(root)
    if config.llm.adapter_path:
        return resolve_adapter_dir(config.llm.adapter_path, root)
    for lora in (ws.market_model_dir(market) / REFINING_ADAPTER_DIR, ws.stage1_lora_dir(market)):
        if resume and (lora / "adapter_config.json").is_file():
            return lora
    warm = ws.market_model_dir(market) / WARM_ADAPTER_DIR
    if not (warm / "adapter_config.json").is_file():
        log.info("warm-starting the advisor adapter for %s at %s", market, warm)
        warm_start(root, config, seed=seed, out_dir=warm)
    elif not adapter_base_matches(warm, root, config):
        log.info("the warm-started adapter at %s was trained on another base; warm-starting again", warm)
        warm_start(root, config, seed=seed, out_dir=warm)
    return warm


def load_advisor(root: Path, market: str, config: Any, *, seed: int, resume: bool) -> AdvisorBundle:
    """The base model (built if it is the tiny default) with the initial adapter applied."""
    from tradelab.advisor.generate import Advisor
    from tradelab.advisor.load import resolve_model_dir

    base_dir = resolve_model_dir(config.llm.base_model, root, config)
    adapter = initial_adapter(root, market, config, seed=seed, resume=resume)
    return AdvisorBundle(Advisor(config, root, adapter_path=adapter), base_dir, adapter)


def experience_terms(market: str, config: Any, arrays: Any, *, end_index: int) -> tuple[Any, dict, dict]:
    """``(slicer, contract, rules)``: what every experience record (and holdout probe) carries for scoring.

    Args:
        market: Market name.
        config: The whole config (``env`` rules, contract spec).
        arrays: The market arrays.
        end_index: First bar forward windows may not reach (the split's end).
    """
    from tradelab.core.tradesim import RULE_KEYS, Costs
    from tradelab.env.tables import get_tables
    from tradelab.markets import contract_spec
    from tradelab.stage1.experience import ForwardSlicer

    rules = config.env.rules
    spec = contract_spec(config, market)
    tables = get_tables(arrays, window_bars=config.env.window_bars, entry_cutoff=rules.entry_cutoff,
                        flatten_time=rules.flatten_time, session_end=spec.session_end)
    slicer = ForwardSlicer(arrays, int(end_index), config.env.forward_horizon_bars, tables.forced_exit)
    rule_dict = {
        **{key: getattr(rules, key) for key in RULE_KEYS}, "flatten_time": rules.flatten_time,
        "entry_cutoff": rules.entry_cutoff, "atr_period_bars": rules.atr_period_bars,
        "trailing_drawdown_usd": rules.trailing_drawdown_usd, "daily_loss_limit_usd": rules.daily_loss_limit_usd,
    }
    return slicer, Costs.from_spec(spec).to_dict(), rule_dict


def recorder_for(root: Path, market: str, config: Any, arrays: Any, *, run_id: str, recent_maxlen: int) -> Any:
    """The experience recorder for the market's train split."""
    from tradelab.stage1.experience import ExperienceRecorder

    slicer, contract, rules = experience_terms(market, config, arrays, end_index=int(arrays.split_index))
    return ExperienceRecorder(
        Workspace.at(root).experience_path(market), market=market, run_id=run_id, slicer=slicer,
        contract=contract, rules=rules,
        flush_every=config.stage1.experience.flush_every_records, recent_maxlen=recent_maxlen,
    )


def env_fns(root: Path, market: str, config: Any, arrays: Any, *, n_envs: int, seed: int, split: str) -> list:
    """Constructors of ``n_envs`` seeded envs over the same arrays."""
    from tradelab.env import make_env

    return [
        (lambda i=i: make_env(market, root, split=split, seed=seed + i, config=config, arrays=arrays))
        for i in range(n_envs)
    ]


def new_model(vecnorm: Any, config: Any, settings: RunSettings, *, seed: int) -> Any:
    """A fresh MaskablePPO with the fusion policy."""
    import torch as th
    from sb3_contrib import MaskablePPO

    from tradelab.stage1.policy import FusionPolicy

    ppo, stage1 = config.ppo, config.stage1
    policy_kwargs = {
        "net_arch": dict(settings.net_arch),
        "activation_fn": th.nn.Tanh if ppo.activation == "tanh" else th.nn.ReLU,
        "llm_weight": float(stage1.llm_weight),
        "confidence_floor": float(stage1.confidence_floor),
    }
    return MaskablePPO(
        FusionPolicy, vecnorm, n_steps=settings.n_steps, batch_size=settings.batch_size, n_epochs=settings.n_epochs,
        learning_rate=ppo.learning_rate, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda, clip_range=ppo.clip_range,
        ent_coef=ppo.ent_coef, vf_coef=ppo.vf_coef, max_grad_norm=ppo.max_grad_norm, policy_kwargs=policy_kwargs,
        seed=seed, device=ppo.device, verbose=0,
    )


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
        flat_entry_every_bars=int(query.flat_entry_every_bars),
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
