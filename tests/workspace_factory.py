"""A ready workspace for the fault tests: the shared NQ market, the tiny advisor, its warm start, and a config copy
whose Stage 1 appends experience every few records (so a fault or a kill lands among its appends, not at its end)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tradelab.paths import Workspace
from tradelab.stage1.wiring import WARM_ADAPTER_DIR

REPO = Path(__file__).resolve().parents[1]


def seeded_workspace(root: Path, nq_workspace: Path, tiny_advisor_dir: Path, warm_adapter_dir: Path, *,
                     flush_every_records: int) -> Path:
    """``root`` with the market's bars, the tiny advisor, the warm adapter and ``config/`` whose
    ``stage1.experience.flush_every_records`` is ``flush_every_records`` (64 in the shipped file)."""
    ws, source = Workspace.at(root), Workspace.at(nq_workspace)
    shutil.copytree(source.data_dir("NQ"), ws.data_dir("NQ"))
    shutil.copytree(tiny_advisor_dir, ws.tiny_advisor_dir())
    shutil.copytree(warm_adapter_dir, ws.market_model_dir("NQ") / WARM_ADAPTER_DIR)
    shutil.copytree(REPO / "config", root / "config")
    stage1_yaml = root / "config" / "stage1.yaml"
    text = stage1_yaml.read_text(encoding="utf-8")
    assert "flush_every_records: 64" in text
    stage1_yaml.write_text(text.replace("flush_every_records: 64", f"flush_every_records: {flush_every_records}"),
                           encoding="utf-8")
    return root
