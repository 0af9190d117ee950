"""``config/ppo.yaml`` and ``config/stage1.yaml``: MaskablePPO hyperparameters and the hybrid fusion."""

from __future__ import annotations

from pydantic import Field

from tradelab.config.base import StrictModel


class PPOConfig(StrictModel):
    """MaskablePPO hyperparameters (sb3-contrib names)."""

    n_envs: int = Field(ge=1, le=64, description="Parallel environments in the vector env.")
    n_steps: int = Field(ge=8, description="Rollout length per env between updates.")
    batch_size: int = Field(ge=8, description="Minibatch size for each gradient step.")
    n_epochs: int = Field(ge=1, description="Passes over each rollout.")
    learning_rate: float = Field(gt=0, description="Adam learning rate.")
    gamma: float = Field(gt=0, le=1, description="Discount factor.")
    total_timesteps: int = Field(ge=1, description="Environment steps for a full Stage 1 run.")


class Stage1Config(StrictModel):
    """Hybrid fusion, querying, experience buffer and in-stage adapter refinement."""

    llm_weight: float = Field(ge=0, description="Weight of log(prior) added to the masked logits; 0 = plain PPO.")
