"""The real agents end to end: a tiny Stage 1 run, then ``evaluate`` with hybrid, PPO, advisor and baselines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tradelab.config import load_config
from tradelab.evaluation.run import evaluate
from tradelab.manifest import load_manifest
from tradelab.paths import Workspace

pytestmark = pytest.mark.slow

AGENTS = ["hybrid", "hybrid_soft_grpo", "ppo", "advisor", "flat", "buy_and_hold", "random"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, nq_workspace: Path, tiny_advisor_dir: Path,
              warm_adapter_dir: Path) -> dict[str, Any]:
    from tradelab.stage1.wiring import WARM_ADAPTER_DIR
    from tradelab.stage1.train import run_stage1

    root = tmp_path_factory.mktemp("eval_integration")
    ws, src = Workspace.at(root), Workspace.at(nq_workspace)
    shutil.copytree(src.data_dir("NQ"), ws.data_dir("NQ"))
    shutil.copytree(tiny_advisor_dir, ws.tiny_advisor_dir())
    shutil.copytree(warm_adapter_dir, ws.market_model_dir("NQ") / WARM_ADAPTER_DIR)
    config = load_config(profile="smoke", overrides={"stage1.refinement.enabled": False,
                                                     "evaluation.episode_bars": 30})
    run_stage1(root, "NQ", config, total_timesteps=128)
    # A Stage 2 adapter stand-in (a copy of Stage 1's) makes evaluation add the adapter comparison.
    shutil.copytree(ws.stage1_lora_dir("NQ"), ws.soft_grpo_adapter_dir("NQ"))
    summary = evaluate(root, "NQ", config, episodes=1, seeds=2)
    report = json.loads((Path(summary.report_dir) / "report.json").read_text())
    return {"root": root, "summary": summary, "report": report}


def test_every_agent_is_reported_on_the_holdout(evaluated: dict[str, Any]) -> None:
    report = evaluated["report"]
    assert list(report["agents"]) == ["hybrid", "hybrid_soft_grpo", "hybrid_stage1", *AGENTS[2:]]
    assert report["settings"]["aliases"] == {"hybrid_stage1": "hybrid"}
    assert report["agents"]["hybrid_stage1"] == report["agents"]["hybrid"]
    assert report["settings"]["profile"] == "smoke" and report["settings"]["episode_bars"] == 30
    split = report["holdout"]["start_index"]
    assert all(seen["min"] >= split for seen in report["bars_seen"].values())
    for name in ("hybrid", "hybrid_soft_grpo", "advisor"):
        entry = report["agents"][name]
        assert entry["advice_count"] > 0 and entry["parse_rate"] is not None, name
    assert report["agents"]["hybrid"]["agreement_with_ppo"] is not None
    assert report["agents"]["advisor"]["agreement_with_ppo"] is None
    assert "parse_rate" not in report["agents"]["ppo"]


def test_report_files_and_manifest(evaluated: dict[str, Any]) -> None:
    report_dir = Path(evaluated["summary"].report_dir)
    for name in ("report.json", "report.md", "equity_drawdown.png", "r_multiples.png", "advisor_calibration.png"):
        assert (report_dir / name).stat().st_size > 0, name
    manifest = load_manifest(evaluated["root"], "NQ")
    assert manifest["evaluation"][-1]["report_dir"] == str(report_dir)
    assert {row["agent"] for row in evaluated["summary"].table} == set(AGENTS + ["hybrid_stage1"])
