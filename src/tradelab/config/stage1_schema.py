"""``config/ppo.yaml`` and ``config/stage1.yaml``: MaskablePPO hyperparameters and the hybrid fusion."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tradelab.config.base import StrictModel


class NetArch(StrictModel):
    """Hidden layer sizes of the actor and the critic MLPs (no shared layers)."""

    pi: list[int] = Field(min_length=1, description="Hidden layer widths of the policy (actor) network.")
    vf: list[int] = Field(min_length=1, description="Hidden layer widths of the value (critic) network.")


class PPOConfig(StrictModel):
    """MaskablePPO hyperparameters (sb3-contrib names)."""

    n_envs: int = Field(ge=1, le=64, description="Parallel environments in the vector env.")
    n_steps: int = Field(ge=8, description="Rollout length per env between updates.")
    batch_size: int = Field(ge=8, description="Minibatch size for each gradient step.")
    n_epochs: int = Field(ge=1, description="Passes over each rollout.")
    learning_rate: float = Field(gt=0, description="Adam learning rate.")
    gamma: float = Field(gt=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(gt=0, le=1, description="GAE lambda (bias/variance trade-off of advantages).")
    clip_range: float = Field(gt=0, lt=1, description="PPO ratio clipping epsilon.")
    ent_coef: float = Field(ge=0, description="Entropy bonus coefficient in the loss.")
    vf_coef: float = Field(ge=0, description="Value loss coefficient in the loss.")
    max_grad_norm: float = Field(gt=0, description="Gradient norm clipping threshold.")
    net_arch: NetArch = Field(description="Actor and critic hidden layers.")
    activation: Literal["tanh", "relu"] = Field(description="Activation function of the hidden layers.")
    normalize_reward: bool = Field(description="VecNormalize also normalises rewards (observations always are).")
    clip_obs: float = Field(gt=0, description="VecNormalize clips normalised observations to +/- this.")
    device: Literal["cpu", "cuda", "auto"] = Field(description="Torch device for the PPO networks.")
    torch_threads: int = Field(ge=0, description="Torch CPU threads during Stage 1 (0 = torch's default).")
    total_timesteps: int = Field(ge=1, description="Environment steps for a full Stage 1 run.")
    checkpoint_every_steps: int = Field(ge=1, description="Environment steps between periodic checkpoints.")

    @model_validator(mode="after")
    def _batch_fits(self) -> "PPOConfig":
        if self.batch_size > self.n_envs * self.n_steps:
            raise ValueError(f"batch_size={self.batch_size} exceeds n_envs*n_steps={self.n_envs * self.n_steps}; "
                             f"lower it")
        return self


class VetoConfig(StrictModel):
    """Risk veto: new entries (BUY/SELL while flat) are masked while any threshold is breached."""

    max_consecutive_losses: int = Field(ge=1, description="Entries are vetoed after this many losses in a row.")
    loss_streak_pause_bars: int = Field(ge=1, description="The loss-streak veto lasts this many bars after the latest loss.")
    min_drawdown_buffer_usd: float = Field(ge=0, description="Entries are vetoed when the drawdown buffer is below this.")
    daily_loss_stop_usd: float = Field(gt=0, description="Entries are vetoed once the session's realised loss reaches this.")


class QueryConfig(StrictModel):
    """When an env asks the advisor (checked every vector step; one batched call for all that ask)."""

    interval_bars: int = Field(
        ge=1, description="Bars between ticks of the interval clock all envs share; at a tick, each env at least half "
        "an interval past its last query asks."
    )
    on_position_change: bool = Field(description="Ask when the env's position side changed on the last bar.")
    entropy_threshold: float = Field(
        ge=0, le=1, description="Ask when the policy's own entropy / log(allowed actions) exceeds this (1 = uniform)."
    )
    cooldown_bars: int = Field(ge=0, description="Never ask again within this many bars of the env's last query.")
    skip_single_action: bool = Field(
        description="Never ask while the vetoed mask allows a single action (advice could not move the policy)."
    )
    only_when_entries_allowed: bool = Field(
        description="Ask only while BUY or SELL is allowed (flat, entries not vetoed); false asks in positions too."
    )
    flat_entry_every_bars: int = Field(
        ge=0, description="While flat with BUY and SELL both allowed, ask whenever at least this many bars passed "
        "since the env's last query (0 = off): more entry records per step, one advisor answer each."
    )
    advice_ttl_bars: int = Field(ge=1, description="Advice older than this many bars is cleared from the slots.")


class ExperienceConfig(StrictModel):
    """The experience buffer (its forward horizon is ``env.forward_horizon_bars``)."""

    flush_every_records: int = Field(ge=1, description="Resolved records are appended to the JSONL in batches of this.")


class RefinementConfig(StrictModel):
    """Periodic LoRA refinement of the advisor on its own hindsight-labelled experience."""

    enabled: bool = Field(description="Train the adapter during Stage 1 (false keeps the warm-started one).")
    every_steps: int = Field(ge=1, description="Environment steps between refinements.")
    recent_records: int = Field(ge=1, description="Most recent resolved records a refinement trains on.")
    min_records: int = Field(ge=1, description="Skip a refinement while fewer resolved records exist.")
    epochs: int = Field(ge=1, description="Passes over the refinement examples.")
    min_weight: float = Field(ge=0, description="Floor of an example's weight (advantage over the advised action, R).")
    weights: Literal["advantage", "uniform", "sides"] = Field(
        description="advantage: the best action's gain over the advised one, floored, then balanced by target "
                    "action; uniform: every example weighs 1; sides: uniform, then BUY and SELL targets rescaled to "
                    "equal totals (other targets keep 1)."
    )
    decisions: Literal["all", "entries"] = Field(
        description="Records a refinement learns from: all, or entries only (flat, BUY and SELL both allowed)."
    )
    hindsight_bars: int = Field(
        ge=0, description="Labelled flat bars of the training split (both entries allowed, labelled in hindsight) "
        "each refinement adds to its examples; 0 = only experience records."
    )
    history: Literal["run", "market"] = Field(
        description="run: only this run's records; market: the run starts with the latest records of the "
                    "market's experience file (earlier runs and loop iterations) in its refinement window."
    )


class Stage1Config(StrictModel):
    """Hybrid fusion, querying, experience buffer and in-stage adapter refinement."""

    use_advisor: bool = Field(description="Query the LLM advisor; false trains PPO alone (slots stay empty).")
    llm_weight: float = Field(ge=0, description="Weight of log(prior) added to the masked logits; 0 = plain PPO.")
    confidence_floor: float = Field(ge=0, le=1, description="Advice below this confidence is treated as no advice.")
    veto: VetoConfig = Field(description="Risk veto thresholds.")
    query: QueryConfig = Field(description="Query triggers.")
    experience: ExperienceConfig = Field(description="Experience buffer.")
    refinement: RefinementConfig = Field(description="In-stage adapter refinement.")

    @model_validator(mode="after")
    def _refinement_can_run(self) -> "Stage1Config":
        if self.refinement.recent_records < self.refinement.min_records:
            raise ValueError("refinement.recent_records < refinement.min_records: refinement would never run")
        return self
