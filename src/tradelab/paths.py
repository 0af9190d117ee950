"""The workspace layout, derived from one root directory (ARCHITECTURE.md §2).

Every path that embeds a market name goes through :func:`tradelab.markets.validate_market_name` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tradelab.errors import ConfigError
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

    def record(self, path: str | Path | None) -> str | None:
        """How a path is written into a manifest: relative to the root (POSIX form) when it lies inside the
        workspace, so a copied or moved workspace keeps pointing at its own files; absolute otherwise."""
        if path is None:
            return None
        absolute = Path(path).expanduser()
        absolute = absolute if absolute.is_absolute() else self.root / absolute
        try:
            return absolute.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(absolute)

    def resolve(self, recorded: str | Path | None) -> Path | None:
        """The absolute path of a manifest entry: relative entries are taken from this root, at use."""
        if recorded is None or recorded == "":
            return None
        path = Path(recorded).expanduser()
        return path if path.is_absolute() else self.root / path

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
        """Markets that have an imported or generated bar file, sorted (folders that are no valid market name,
        such as a stray ``data/nq/``, are left out: see :meth:`stray_data_dirs`)."""
        return sorted(name for name in self._data_dir_names() if _valid_market(name))

    def stray_data_dirs(self) -> list[Path]:
        """Folders under ``data/`` holding a bar file whose name is not a valid market name (skipped by listings)."""
        return [self.root / "data" / name for name in self._data_dir_names() if not _valid_market(name)]

    def _data_dir_names(self) -> list[str]:
        base = self.root / "data"
        if not base.is_dir():
            return []
        return sorted(p.parent.name for p in base.glob("*/bars_1m.parquet") if p.parent.name != "soft_grpo")

    def markets_with_manifest(self) -> list[str]:
        """Markets that have a Phase 3 manifest, sorted."""
        base = self.root / "models" / "phase3_hybrid"
        if not base.is_dir():
            return []
        return sorted(p.parent.name for p in base.glob(f"*/{MANIFEST_NAME}") if _valid_market(p.parent.name))


def _valid_market(name: str) -> bool:
    try:
        validate_market_name(name)
    except ConfigError:
        return False
    return True
