"""The workspace layout, derived from one root directory (ARCHITECTURE.md §2).

Every path that embeds a market name goes through :func:`tradelab.markets.validate_market_name` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tradelab.markets import validate_market_name

MANIFEST_NAME = "phase3_stage_manifest.json"


@dataclass(frozen=True)
class Workspace:
    """All workspace paths for one root.

    Args:
        root: The workspace root (the CLI's ``--root``, default the current directory).
    """

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "Workspace":
        return cls(Path(root).expanduser().resolve())

    # data/
    def data_dir(self, market: str) -> Path:
        return self.root / "data" / validate_market_name(market)

    def bars_path(self, market: str) -> Path:
        return self.data_dir(market) / "bars_1m.parquet"

    def features_path(self, market: str) -> Path:
        return self.data_dir(market) / "features.parquet"

    def data_report_path(self, market: str) -> Path:
        return self.data_dir(market) / "data_report.json"

    def soft_grpo_data_dir(self, market: str) -> Path:
        return self.root / "data" / "soft_grpo" / validate_market_name(market)

    def experience_path(self, market: str) -> Path:
        return self.soft_grpo_data_dir(market) / "stage1_experience.jsonl"

    # models/
    def tiny_advisor_dir(self) -> Path:
        return self.root / "models" / "base" / "tiny-advisor"

    def market_model_dir(self, market: str) -> Path:
        return self.root / "models" / "phase3_hybrid" / validate_market_name(market)

    def manifest_path(self, market: str) -> Path:
        return self.market_model_dir(market) / MANIFEST_NAME

    def ppo_dir(self, market: str) -> Path:
        return self.market_model_dir(market) / "ppo"

    def stage1_lora_dir(self, market: str) -> Path:
        return self.market_model_dir(market) / "stage1_lora"

    def stage1_merged_dir(self, market: str) -> Path:
        return self.market_model_dir(market) / "stage1_merged"

    def soft_grpo_output_dir(self, market: str) -> Path:
        return self.market_model_dir(market) / "soft_grpo"

    def soft_grpo_adapter_dir(self, market: str) -> Path:
        return self.soft_grpo_output_dir(market) / "adapter"

    # logs/, tensorboard_logs/, reports/
    def app_log(self) -> Path:
        return self.root / "logs" / "app.log"

    def soft_grpo_log_dir(self) -> Path:
        return self.root / "logs" / "soft_grpo"

    def stage1_tensorboard_dir(self, market: str) -> Path:
        return self.root / "tensorboard_logs" / "phase3" / "stage1" / validate_market_name(market)

    def soft_grpo_tensorboard_dir(self, market: str) -> Path:
        return self.root / "tensorboard_logs" / "phase3" / "soft_grpo" / validate_market_name(market)

    def reports_dir(self, market: str) -> Path:
        return self.root / "reports" / validate_market_name(market)

    def markets_with_data(self) -> list[str]:
        """Markets that have an imported or generated bar file, sorted."""
        base = self.root / "data"
        if not base.is_dir():
            return []
        return sorted(p.parent.name for p in base.glob("*/bars_1m.parquet") if p.parent.name != "soft_grpo")

    def markets_with_manifest(self) -> list[str]:
        """Markets that have a Phase 3 manifest, sorted."""
        base = self.root / "models" / "phase3_hybrid"
        if not base.is_dir():
            return []
        return sorted(p.parent.name for p in base.glob(f"*/{MANIFEST_NAME}"))
