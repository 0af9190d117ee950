"""``config/evaluation.yaml``: holdout backtests and reports."""

from __future__ import annotations

from pydantic import Field

from tradelab.config.base import StrictModel


class EvaluationConfig(StrictModel):
    """Evaluation settings."""

    episodes: int = Field(ge=1, description="Holdout episodes per agent and seed.")
