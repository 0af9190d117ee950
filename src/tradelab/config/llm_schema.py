"""``config/llm.yaml``: the advisor model, generation and adapter training."""

from __future__ import annotations

from pydantic import Field

from tradelab.config.base import StrictModel


class LLMConfig(StrictModel):
    """Where the advisor model lives and how it generates."""

    model: str = Field(description="Local model directory (relative to --root) or a hub id resolved from the cache.")
