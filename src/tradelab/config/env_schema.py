"""``config/env.yaml``: the futures trading environment (rules, costs, episodes, reward)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tradelab.config.base import StrictModel

_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class RulesConfig(StrictModel):
    """Exit mechanics and Apex-style account rules; the reward replays the same values."""

    atr_period_bars: int = Field(ge=2, le=200, description="Wilder ATR period used for stops and targets.")
    stop_atr: float = Field(gt=0, description="Initial stop distance in ATRs from the fill price.")
    target_r: float = Field(gt=0, description="Take-profit distance as a multiple of the initial risk (R).")
    trail_atr: float = Field(gt=0, description="Trailing-stop distance in ATRs once the trail is enabled.")
    be_buffer_ticks: int = Field(ge=0, description="Ticks beyond entry the break-even stop is placed at.")
    starting_balance_usd: float = Field(gt=0, description="Account balance at the start of every episode.")
    trailing_drawdown_usd: float = Field(
        gt=0, description="Apex trailing drawdown: end-of-bar equity <= peak - this flattens and ends the episode."
    )
    daily_loss_limit_usd: float | None = Field(
        gt=0, description="Session loss (realised + open) that flattens and blocks entries for the day; null disables."
    )
    entry_cutoff: str = Field(
        pattern=_HHMM, description="No entries decided at a bar closing at or after this ET time (as a distance "
                                   "before session_end, applied to each session's real close)."
    )
    flatten_time: str = Field(
        pattern=_HHMM, description="Positions close at the first bar ending at/after this ET time (as a distance "
                                   "before session_end, applied to each session's real close) and at session end."
    )

    @model_validator(mode="after")
    def _cutoff_before_flatten(self) -> RulesConfig:
        if self.entry_cutoff > self.flatten_time:
            raise ValueError(
                f"entry_cutoff {self.entry_cutoff} is after flatten_time {self.flatten_time}: entries would be "
                f"flattened at once; set entry_cutoff at or before flatten_time"
            )
        return self


class RewardConfig(StrictModel):
    """Per-step reward shaping; the default is realised P&L in R-multiples net of costs."""

    kind: Literal["r_multiple", "pnl_usd"] = Field(description="Unit of the realised-P&L reward.")
    drawdown_breach_penalty: float = Field(ge=0, description="Subtracted once when the trailing drawdown is hit.")
    invalid_action_penalty: float = Field(ge=0, description="Subtracted when a masked action is taken anyway.")
    hold_in_trade_cost: float = Field(ge=0, description="Per-bar cost while in a position (discourages camping).")


class EnvConfig(StrictModel):
    """The one gymnasium futures env: episodes, observation, rules and reward."""

    episode_bars: int = Field(ge=10, le=100_000, description="Maximum bars per episode.")
    random_start: bool = Field(
        description="Seeded random episode starts (true) or a fixed start at the split's first bar."
    )
    window_bars: int = Field(ge=1, le=256, description="Feature window length in the observation.")
    holdout_fraction: float = Field(gt=0, lt=0.9, description="Latest fraction of bars held out (chronological).")
    forward_horizon_bars: int = Field(ge=1, le=1000, description="Bars after a decision recorded for rewards/labels.")
    rules: RulesConfig
    reward: RewardConfig
