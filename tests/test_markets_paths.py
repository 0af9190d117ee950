"""Market names are validated wherever they become paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradelab.config import load_config
from tradelab.errors import ConfigError
from tradelab.markets import contract_spec, validate_market_name
from tradelab.paths import Workspace


@pytest.mark.parametrize("name", ["NQ", "ES", "M2K", "MYM", "A" * 16])
def test_valid_names(name: str) -> None:
    assert validate_market_name(name) == name


@pytest.mark.parametrize("name", ["", "nq", "N Q", "../NQ", "NQ/ES", "A" * 17, "NQ.", "é"])
def test_invalid_names_rejected_before_they_become_paths(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid market name"):
        Workspace.at(tmp_path).bars_path(name)


def test_every_required_market_has_a_full_spec() -> None:
    cfg = load_config()
    for market in ("ES", "NQ", "YM", "RTY", "MES", "MNQ", "M2K", "MYM"):
        spec = contract_spec(cfg, market)
        assert spec.tick_value == pytest.approx(spec.tick_size * spec.point_value)
        assert spec.session_start < spec.session_end


def test_unknown_market_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="known: .*NQ"):
        contract_spec(load_config(), "ZZ")


def test_workspace_layout(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path)
    assert ws.manifest_path("NQ") == tmp_path / "models/phase3_hybrid/NQ/phase3_stage_manifest.json"
    assert ws.experience_path("NQ") == tmp_path / "data/soft_grpo/NQ/stage1_experience.jsonl"
    assert ws.soft_grpo_tensorboard_dir("ES") == tmp_path / "tensorboard_logs/phase3/soft_grpo/ES"


def test_the_config_schema_does_not_import_markets() -> None:
    """markets -> config.schema -> market_names is one-way: loading the schema leaves tradelab.markets unimported."""
    import subprocess
    import sys

    code = ("import sys, tradelab.config.schema as s; s.MarketsConfig(contracts={}); "
            "assert 'tradelab.markets' not in sys.modules, 'config.schema imported tradelab.markets'")
    subprocess.run([sys.executable, "-c", code], check=True)
