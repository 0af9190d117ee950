"""An evaluation workspace: a copy of the session's generated NQ market plus a Stage 1 manifest stub.

The copy keeps the shared ``nq_workspace`` free of the manifest these tests write. The stub records what Stage 1
records about the split (``data`` section, ``stage1.status``) so ``evaluate`` runs its baselines without a trained
model; the real-agent path is covered by the slow integration test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tradelab.config import TradelabConfig, load_config
from tradelab.paths import Workspace

BASELINES = ["flat", "buy_and_hold", "random"]


@pytest.fixture(scope="session")
def baseline_config() -> TradelabConfig:
    """The smoke profile's evaluation (two 45-bar episodes per seed) with the baseline agents."""
    return load_config(profile="smoke", overrides={"evaluation.agents": BASELINES,
                                                   "evaluation.start_mode": "random_bar"})


def make_eval_workspace(src: Path, dst: Path, config: TradelabConfig) -> Path:
    """Copy the market data of ``src`` to ``dst`` and write the manifest stub Stage 1 would leave."""
    from tradelab.evaluation.holdout import bar_time
    from tradelab.fileio import sha256_file
    from tradelab.manifest import merge_stage1, set_section
    from tradelab.marketdata import load_market_arrays

    shutil.copytree(Workspace.at(src).data_dir("NQ"), Workspace.at(dst).data_dir("NQ"))
    arrays = load_market_arrays(dst, "NQ", config)
    bars = Workspace.at(dst).bars_path("NQ")
    set_section(dst, "NQ", "data", {
        "bars_path": str(bars), "sha256": sha256_file(bars), "rows": len(arrays),
        "train_end": bar_time(arrays, arrays.split_index - 1), "holdout_start": bar_time(arrays, arrays.split_index),
    })
    merge_stage1(dst, "NQ", {"status": "completed", "profile": config.profile})
    return dst


@pytest.fixture(scope="session")
def workspace_factory(nq_workspace: Path, baseline_config: TradelabConfig) -> Callable[[Path], Path]:
    """``factory(dst)`` makes a fresh evaluation workspace at ``dst`` (for tests that damage their manifest)."""
    return lambda dst: make_eval_workspace(nq_workspace, dst, baseline_config)


@pytest.fixture(scope="module")
def eval_root(nq_workspace: Path, tmp_path_factory: pytest.TempPathFactory, baseline_config: TradelabConfig) -> Path:
    return make_eval_workspace(nq_workspace, tmp_path_factory.mktemp("eval_ws"), baseline_config)
