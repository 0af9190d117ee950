"""Stage 1 fixtures: private workspaces seeded from the shared generated market, tiny advisor and warm adapter."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tradelab.config import TradelabConfig, load_config
from tradelab.paths import Workspace
from tradelab.stage1.wiring import WARM_ADAPTER_DIR


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small nets on a shared 2-core machine run far faster on one thread (no spin-waiting); restored after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def stage1_config() -> TradelabConfig:
    """The smoke profile shrunk further: checkpoints and refinements every 256 steps."""
    return load_config(profile="smoke", overrides={
        "ppo.checkpoint_every_steps": 256,
        "stage1.refinement.every_steps": 256,
        "stage1.refinement.min_records": 8,
        "stage1.refinement.recent_records": 32,
    })


@pytest.fixture(scope="module")
def make_root(
    tmp_path_factory: pytest.TempPathFactory, nq_workspace: Path, tiny_advisor_dir: Path, warm_adapter_dir: Path
) -> Callable[[], Path]:
    """Factory of fresh workspaces holding a copy of the NQ bars, the tiny advisor and the warm-started adapter.

    Each test that trains gets its own root, so runs never see each other's manifests or experience files.
    """

    def make() -> Path:
        root = tmp_path_factory.mktemp("stage1_ws")
        ws, src = Workspace.at(root), Workspace.at(nq_workspace)
        shutil.copytree(src.data_dir("NQ"), ws.data_dir("NQ"))
        shutil.copytree(tiny_advisor_dir, ws.tiny_advisor_dir())
        shutil.copytree(warm_adapter_dir, ws.market_model_dir("NQ") / WARM_ADAPTER_DIR)
        return root

    return make
