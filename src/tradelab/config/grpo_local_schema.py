"""``config/grpo_local.yaml``: the single-process local GRPO / SofT-GRPO engine."""

from __future__ import annotations

from pydantic import Field

from tradelab.config.base import StrictModel


class GrpoLocalConfig(StrictModel):
    """Local engine settings."""

    mode: str = Field(description="'soft' (SofT-GRPO) or 'discrete' rollouts.")
