"""Fixtures for the Stage 2 tests: a workspace with experience records and a Stage 1 manifest, a stand-in python."""

from __future__ import annotations

from pathlib import Path

import pytest
from stage2_factory import fake_stage1, mixed_records, write_experience, write_standin_python


@pytest.fixture()
def stage2_root(tmp_path: Path) -> Path:
    """A workspace with 40 resolved experiences and a completed (stand-in) Stage 1."""
    root = tmp_path / "ws"
    write_experience(root, mixed_records())
    fake_stage1(root)
    return root


@pytest.fixture()
def standin_python(tmp_path: Path) -> Path:
    return write_standin_python(tmp_path)
