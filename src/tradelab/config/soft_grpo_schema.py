"""``config/phase3_soft_grpo.yaml``: Stage 2 dataset export, preflight and the verl / SofT-GRPO runner."""

from __future__ import annotations

from pydantic import Field

from tradelab.config.base import StrictModel


class SoftGrpoConfig(StrictModel):
    """Stage 2 settings."""

    repo_root: str = Field(description="SofT-GRPO repository; $SOFT_GRPO_REPO_ROOT overrides it.")
