"""Origin records for artifacts: schema version, git SHA, package versions, UTC timestamps."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
"""Version of tradelab's on-disk contracts (experience record, parquet row, manifest)."""

TRACKED_PACKAGES: tuple[str, ...] = (
    "tradelab", "numpy", "pandas", "pyarrow", "torch", "gymnasium", "stable-baselines3", "sb3-contrib",
    "transformers", "peft", "tokenizers", "verl", "ta",
)


def utc_now() -> str:
    """Current UTC time as ISO-8601 with a ``Z`` suffix, second resolution."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def utc_stamp() -> str:
    """Current UTC time for file and folder names, e.g. ``20261122T161500Z``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names``; a missing package maps to ``"absent"``."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    versions["python"] = platform.python_version()
    return versions


def git_sha(cwd: str | Path | None = None) -> str:
    """The checkout's HEAD SHA (with ``-dirty`` when there are local changes), or ``"unknown"`` outside git."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def origin(config_hash: str, seed: int | None, *, profile: str | None = None) -> dict[str, object]:
    """The standard origin block every artifact carries; ``profile`` names the run profile of a whole config."""
    return {
        "schema_version": SCHEMA_VERSION,
        **({"profile": profile} if profile is not None else {}),
        "config_hash": config_hash,
        "seed": seed,
        "git_sha": git_sha(),
        "versions": package_versions(),
        "created_at": utc_now(),
    }
