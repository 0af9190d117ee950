"""Which agents run for each adapter choice (nothing is loaded: the loaders are only called by ``build``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradelab.config import TradelabConfig
from tradelab.errors import StageNotReady
from tradelab.evaluation.roster import advisor_models, build_roster
from tradelab.handoff import AdvisorModel
from tradelab.manifest_schema import RunOutput, RunRecord
from tradelab.evaluation.backtest import resolve_settings
from tradelab.paths import Workspace

NAMES = ["hybrid", "ppo", "advisor", "flat", "buy_and_hold", "random"]


def _adapter(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}")


def _roster(root: Path, config: TradelabConfig, adapter: str) -> tuple[list[str], dict, dict]:
    settings = resolve_settings(config, episodes=None, seeds=None, adapter=adapter, walk_forward=False)
    specs, skipped, aliases = build_roster(root, "NQ", config, settings, NAMES)
    return [s.name for s in specs], skipped, aliases


def test_stage1_adapter_only(tmp_path: Path, config: TradelabConfig) -> None:
    _adapter(Workspace.at(tmp_path).stage1_lora_dir("NQ"))
    names, skipped, aliases = _roster(tmp_path, config, "stage1")
    assert names == NAMES and skipped == {} and aliases == {}
    with pytest.raises(StageNotReady, match="soft_grpo"):
        _roster(tmp_path, config, "soft_grpo")


def test_both_adapters_add_the_other_hybrid(tmp_path: Path, config: TradelabConfig) -> None:
    ws = Workspace.at(tmp_path)
    _adapter(ws.stage1_lora_dir("NQ"))
    _adapter(ws.soft_grpo_adapter_dir("NQ"))
    names, _, aliases = _roster(tmp_path, config, "soft_grpo")
    assert names == ["hybrid", "hybrid_stage1", *NAMES[1:]]
    assert aliases == {"hybrid_soft_grpo": "hybrid"}
    names, _, aliases = _roster(tmp_path, config, "stage1")
    assert names == ["hybrid", "hybrid_soft_grpo", *NAMES[1:]] and aliases == {"hybrid_stage1": "hybrid"}


def test_adapter_none_keeps_ppo_and_baselines(tmp_path: Path, config: TradelabConfig) -> None:
    names, skipped, _ = _roster(tmp_path, config, "none")
    assert names == ["ppo", "flat", "buy_and_hold", "random"] and set(skipped) == {"hybrid", "advisor"}


def test_manifest_adapter_path_wins(tmp_path: Path, config: TradelabConfig) -> None:
    _adapter(tmp_path / "elsewhere" / "lora")
    manifest = {"stage1": {"lora_adapter_path": "elsewhere/lora"}}
    assert advisor_models(tmp_path, "NQ", manifest, config) == {
        "stage1": AdvisorModel(None, tmp_path.resolve() / "elsewhere" / "lora")}
    assert advisor_models(tmp_path, "NQ", None, config) == {}


def test_a_whole_model_from_stage2_is_the_soft_grpo_advisor(tmp_path: Path, config: TradelabConfig) -> None:
    ws = Workspace.at(tmp_path)
    _adapter(ws.stage1_lora_dir("NQ"))
    _adapter(ws.soft_grpo_adapter_dir("NQ"))  # an older adapter: the last completed run's output wins
    base = {"name": "b", "local_path": "models/base/other", "smoke_test_model": False}
    run = RunRecord(engine="soft-grpo", status="completed",
                    output=RunOutput(kind="full_model", path="models/phase3_hybrid/NQ/soft_grpo/hf_model"))
    manifest = {"stage1": {"status": "completed", "base_model": base},
                "stage2": {"dataset": None, "preflight": None, "runs": [run.record()]}}
    found = advisor_models(tmp_path, "NQ", manifest, config)
    assert found == {"stage1": AdvisorModel(ws.root / "models/base/other", ws.stage1_lora_dir("NQ")),
                     "soft_grpo": AdvisorModel(ws.soft_grpo_output_dir("NQ") / "hf_model", None)}
    loaded = found["soft_grpo"].config_for(config).llm
    assert loaded.model == str(ws.soft_grpo_output_dir("NQ") / "hf_model") and loaded.adapter_path is None
