"""The root config object and the small sections (app, markets).

Each YAML file under ``config/`` maps to one section; the section models live next to the code that uses them in
spirit but are declared here in ``tradelab.config`` so the loader and the hash see one tree. Every field is
documented where it is declared (and again by a comment in the YAML file).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tradelab.config.base import StrictModel
from tradelab.config.env_schema import EnvConfig
from tradelab.config.evaluation_schema import EvaluationConfig
from tradelab.config.grpo_local_schema import GrpoLocalConfig
from tradelab.config.llm_schema import LLMConfig
from tradelab.config.soft_grpo_schema import SoftGrpoConfig
from tradelab.config.stage1_schema import PPOConfig, Stage1Config
from tradelab.market_names import validate_market_name

_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class AppConfig(StrictModel):
    """``config/app.yaml``: process-wide settings."""

    seed: int = Field(ge=0, description="Global seed for data generation, envs and training unless overridden.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(description="Level for logs/app.log.")
    default_market: str = Field(description="Market used by --test and offered first in the menu.")
    synthetic_days: int = Field(
        ge=5, le=2000, description="Trading days `data generate` writes by default (and `--test` when data is missing)."
    )
    synthetic_edge: float = Field(ge=0.0, le=1.0, allow_inf_nan=False,
                                  description="Planted momentum edge of `data generate` (0 = the null market).")


class ContractSpec(StrictModel):
    """One futures contract (all money in USD, times in America/New_York)."""

    root_symbol: str = Field(description="Databento/CME root symbol, e.g. 'NQ' matches outrights like NQH5.")
    description: str = Field(description="Human-readable contract name.")
    tick_size: float = Field(gt=0, description="Minimum price increment in index points.")
    tick_value: float = Field(gt=0, description="USD value of one tick for one contract.")
    point_value: float = Field(gt=0, description="USD value of one full index point for one contract.")
    commission_per_side: float = Field(ge=0, description="Round-turn is twice this; USD per contract per side.")
    slippage_ticks: float = Field(ge=0, description="Ticks of adverse slippage applied to every market fill.")
    session_start: str = Field(pattern=_HHMM, description="Session open (ET, HH:MM); import keeps bars from here.")
    session_end: str = Field(pattern=_HHMM, description="Session close (ET, HH:MM); bars at or after it are dropped.")
    synthetic_start_price: float = Field(gt=0, description="Starting price for the synthetic market generator.")
    synthetic_daily_vol: float = Field(gt=0, lt=0.2, description="Typical daily volatility (fraction) for synthesis.")


class MarketsConfig(StrictModel):
    """``config/markets.yaml``: contract specs keyed by market name."""

    contracts: dict[str, ContractSpec] = Field(description="Market name -> contract spec.")

    @field_validator("contracts")
    @classmethod
    def _names(cls, v: dict[str, ContractSpec]) -> dict[str, ContractSpec]:
        for name in v:
            validate_market_name(name)
        return v


class TradelabConfig(StrictModel):
    """The whole resolved configuration; one attribute per YAML file, and the run profile laid over them."""

    profile: str = Field(
        min_length=1, description="Name of the run profile the loader laid over the section files (set by "
        "load_config, not by any file); recorded next to the config hash in manifests and reports."
    )
    app: AppConfig
    markets: MarketsConfig
    env: EnvConfig
    ppo: PPOConfig
    stage1: Stage1Config
    llm: LLMConfig
    soft_grpo: SoftGrpoConfig
    grpo_local: GrpoLocalConfig
    evaluation: EvaluationConfig


SECTION_FILES: dict[str, str] = {
    "app": "app.yaml",
    "markets": "markets.yaml",
    "env": "env.yaml",
    "ppo": "ppo.yaml",
    "stage1": "stage1.yaml",
    "llm": "llm.yaml",
    "soft_grpo": "phase3_soft_grpo.yaml",
    "grpo_local": "grpo_local.yaml",
    "evaluation": "evaluation.yaml",
}
"""Section attribute -> file name under the config directory."""
