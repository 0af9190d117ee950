"""``config/evaluation.yaml``: holdout backtests against baselines, metrics and reports."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tradelab.config.base import StrictModel

AgentName = Literal["hybrid", "ppo", "advisor", "flat", "buy_and_hold", "random"]
"""Agents evaluation can run; ``hybrid_stage1``/``hybrid_soft_grpo`` join when both adapters exist."""


class EvaluationConfig(StrictModel):
    """Evaluation settings: which agents, how many episodes and seeds, which statistics and plots."""

    episodes: int = Field(ge=1, description="Holdout episodes per agent and seed (per window with walk-forward).")
    seeds: int = Field(ge=1, le=100, description="Evaluation seeds; seed i is base_seed + i. Several give a CI.")
    base_seed: int = Field(ge=0, description="First evaluation seed; it picks the episode starts.")
    episode_bars: int | None = Field(
        ge=10, le=100_000, description="Maximum bars per evaluation episode; null uses env.episode_bars."
    )
    start_mode: Literal["session_open", "random_bar"] = Field(
        description="Episode starts: seeded draw of holdout session opens, or of any holdout bar."
    )
    walk_forward_windows: int = Field(
        ge=2, le=100, description="Consecutive holdout windows evaluated separately when walk-forward is on."
    )
    agents: list[AgentName] = Field(min_length=1, description="Agents to run, in report order.")
    random_agent_seed: int = Field(ge=0, description="Seed of the random-valid-action baseline (plus the eval seed).")
    deterministic_policy: bool = Field(description="PPO and hybrid take their most likely action (no sampling).")
    advisor_query_interval_bars: int = Field(
        ge=1, description="Advisor-alone asks the advisor every this many bars and holds in between."
    )
    probe_prompts: int = Field(ge=1, le=100_000,
                               description="Holdout prompts the `loop` command measures the advisor on.")
    hit_horizon_bars: int = Field(ge=1, le=1000, description="Forward bars for the advisor's direction hit rate.")
    calibration_bins: int = Field(ge=2, le=50, description="Confidence bins of the advisor calibration plot.")
    ci_level: float = Field(gt=0, lt=1, description="Confidence level of the across-seed interval (0.95 = 95%).")
    plots: bool = Field(description="Write PNG plots (equity curves, drawdown, advisor calibration).")
    bootstrap_resamples: int = Field(
        ge=100, le=100_000, description="Block-bootstrap resamples behind each day/trade interval."
    )
    cost_sweep: bool = Field(description="Re-score every agent's trades at each cost multiple (also --cost-sweep).")
    cost_sweep_multiples: list[float] = Field(
        min_length=2, description="Multiples of commission and slippage the cost sweep scores at (1.0 = as charged)."
    )
    walk_forward_purge_bars: int | None = Field(
        ge=0, le=100_000, description="Forward window of a training bar's label; null uses env.episode_bars."
    )
    walk_forward_embargo_bars: int = Field(
        ge=0, le=100_000, description="Bars embargoed in front of the purged band before each walk-forward fold."
    )

    @field_validator("cost_sweep_multiples")
    @classmethod
    def _multiples(cls, v: list[float]) -> list[float]:
        if any(m < 0 for m in v) or sorted(set(v)) != v:
            raise ValueError(f"cost_sweep_multiples must be distinct, >= 0 and ascending, got {v}; e.g. [0, 1, 2, 3]")
        return v

    @field_validator("agents")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"agents lists a name twice: {v}; keep each agent once")
        return v
