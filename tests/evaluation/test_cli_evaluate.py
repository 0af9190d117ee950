"""``evaluate --walk-forward K --cost-sweep`` through the CLI, and a bad K as a one-line user error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tradelab.cli.app import main

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config"


def _workspace(factory: Any, root: Path) -> Path:
    factory(root)
    shutil.copytree(SHIPPED_CONFIG, root / "config")
    path = root / "config" / "evaluation.yaml"
    text = path.read_text().replace("agents: [hybrid, ppo, advisor, flat, buy_and_hold, random]",
                                    "agents: [flat, random]")
    path.write_text(text.replace("plots: true", "plots: false"))
    return root


def test_walk_forward_k_and_cost_sweep_from_the_cli(workspace_factory: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = _workspace(workspace_factory, tmp_path)
    code = main(["--root", str(root), "evaluate", "--market", "NQ", "--episodes", "1", "--seeds", "1",
                 "--walk-forward", "2", "--cost-sweep"])
    assert code == 0, capsys.readouterr().err
    report_dir = next((root / "reports" / "NQ").iterdir())
    report = json.loads((report_dir / "report.json").read_text())
    assert len(report["walk_forward"]) == 2 and report["walk_forward_design"]["folds"] == 2
    assert list(report["cost_sweep"]["agents"]) == ["flat", "random"]
    assert "## Cost sweep" in (report_dir / "report.md").read_text()


def test_walk_forward_zero_is_a_user_error(workspace_factory: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root = _workspace(workspace_factory, tmp_path)
    assert main(["--root", str(root), "evaluate", "--market", "NQ", "--walk-forward", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--walk-forward 0" in err[0] and "Traceback" not in err[0]
