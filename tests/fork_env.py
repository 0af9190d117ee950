"""The SofT-GRPO fork's pinned interpreter for tests that run code under its transformers 4.51.1 (`make fork-env`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def fork_python() -> Path:
    """``.cache/fork-env/bin/python`` (or ``$TRADELAB_FORK_PYTHON``); missing: a failure under CI, else a skip."""
    path = Path(os.environ.get("TRADELAB_FORK_PYTHON") or PROJECT_ROOT / ".cache" / "fork-env" / "bin" / "python")
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: `make test` builds it with `make fork-env`")
        pytest.skip(f"{path} not built; run `make fork-env`")
    return path
