"""The test profile: which full-run value each ``test`` block value replaces, declared once.

``--test`` runs (Stage 1, the local GRPO engine, evaluation, the loop) read their ordinary config fields from
:func:`apply_test_profile`'s result instead of choosing between ``x`` and ``test.x`` field by field, so a test value
cannot be read in one place and missed in another.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

TEST_PROFILE: dict[str, str] = {
    "ppo.n_envs": "ppo.test.n_envs",
    "ppo.n_steps": "ppo.test.n_steps",
    "ppo.batch_size": "ppo.test.batch_size",
    "ppo.n_epochs": "ppo.test.n_epochs",
    "ppo.net_arch": "ppo.test.net_arch",
    "ppo.total_timesteps": "ppo.test.total_timesteps",
    "ppo.checkpoint_every_steps": "ppo.test.checkpoint_every_steps",
    "stage1.query.interval_bars": "stage1.test.interval_bars",
    "stage1.refinement.every_steps": "stage1.test.refinement_every_steps",
    "stage1.refinement.min_records": "stage1.test.refinement_min_records",
    "stage1.refinement.recent_records": "stage1.test.refinement_recent_records",
    "stage1.refinement.epochs": "stage1.test.refinement_epochs",
    "grpo_local.cpu_threads": "grpo_local.test.cpu_threads",
    "grpo_local.rollout.group_size": "grpo_local.test.group_size",
    "grpo_local.rollout.max_new_tokens": "grpo_local.test.max_new_tokens",
    "grpo_local.soft.max_think_tokens": "grpo_local.test.max_think_tokens",
    "grpo_local.soft.think_start_marker": "grpo_local.test.think_start_marker",
    "grpo_local.optim.steps": "grpo_local.test.steps",
    "grpo_local.optim.prompts_per_step": "grpo_local.test.prompts_per_step",
    "grpo_local.optim.lr": "grpo_local.test.lr",
    "grpo_local.run.checkpoint_every": "grpo_local.test.checkpoint_every",
    "grpo_local.run.val_every": "grpo_local.test.val_every",
    "grpo_local.run.val_prompts": "grpo_local.test.val_prompts",
    "evaluation.episodes": "evaluation.test.episodes",
    "evaluation.seeds": "evaluation.test.seeds",
    "evaluation.episode_bars": "evaluation.test.episode_bars",
    "evaluation.advisor_query_interval_bars": "evaluation.test.advisor_query_interval_bars",
    "evaluation.probe_prompts": "evaluation.test.probe_prompts",
    "llm.default_model": "llm.test.default_model",
}
"""Full-run field -> the ``test`` block field that replaces it under ``--test``."""

Model = TypeVar("Model", bound=BaseModel)


def _get(model: BaseModel, dotted: str) -> object:
    value: object = model
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _with(model: Model, parts: list[str], value: object) -> Model:
    head, *rest = parts
    new = value if not rest else _with(getattr(model, head), rest, value)
    return model.model_copy(update={head: new})


def apply_test_profile(config: Model) -> Model:
    """``config`` with every :data:`TEST_PROFILE` value in place (the ``test`` blocks stay; applying twice is the
    same as once).

    Args:
        config: A :class:`tradelab.config.TradelabConfig` (any model with the profile's sections).
    """
    for target, source in TEST_PROFILE.items():
        config = _with(config, target.split("."), _get(config, source))
    return config
