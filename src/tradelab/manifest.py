"""The per-market Phase 3 manifest: ``models/phase3_hybrid/<MKT>/phase3_stage_manifest.json``.

One module owns reading and writing it (ARCHITECTURE.md §11). Sections are plain JSON objects:

- ``data``: bars_path, sha256, rows, start, end, train_end, holdout_start
- ``stage1``: status, timings, seeds, config hash, git SHA, versions, artifact paths, experience and LLM stats
- ``stage2``: ``dataset`` (last export), ``preflight`` (last report), ``runs`` (every launch attempt, appended)
- ``evaluation``: list of report summaries, appended

Every change goes through :func:`update_manifest`, which holds an exclusive lock, re-reads the file, applies the
change and saves it atomically. A file that fails to parse is never overwritten: the error names it and a ``.bak``
copy is kept beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tradelab.errors import DataError, StageNotReady
from tradelab.io import atomic_write_json
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, utc_now

Manifest = dict[str, Any]

SECTIONS: tuple[str, ...] = ("data", "stage1", "stage2", "evaluation")


def new_manifest(market: str) -> Manifest:
    """An empty manifest for ``market`` with every section present."""
    now = utc_now()
    return {
        "schema_version": SCHEMA_VERSION,
        "market": market,
        "created_at": now,
        "updated_at": now,
        "data": None,
        "stage1": None,
        "stage2": {"dataset": None, "preflight": None, "runs": []},
        "evaluation": [],
    }


def load_manifest(root: str | Path, market: str) -> Manifest | None:
    """Read a market's manifest, or ``None`` if it does not exist yet.

    Raises:
        DataError: The file exists but is not a valid manifest (a ``.bak`` copy is written next to it).
    """
    path = Workspace.at(root).manifest_path(market)
    if not path.exists():
        return None
    return _parse(path, market)


def require_stage1(root: str | Path, market: str) -> Manifest:
    """The manifest of a market whose Stage 1 completed, else a :class:`StageNotReady` that says how to get one."""
    manifest = load_manifest(root, market)
    status = (manifest or {}).get("stage1") or {}
    if status.get("status") != "completed":
        found = status.get("status", "missing")
        raise StageNotReady(
            f"{Workspace.at(root).manifest_path(market)}: stage1.status is {found!r}, Stage 2 needs 'completed'; "
            f"run `python main.py stage1 --market {market} --test` (or a full run) first"
        )
    return manifest  # type: ignore[return-value]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_manifest(root: str | Path, market: str, change: Callable[[Manifest], None]) -> Manifest:
    """Apply ``change`` to the market's manifest under a lock and save it atomically.

    Args:
        root: Workspace root.
        market: Market name.
        change: Mutates the manifest dict in place (created empty if the file does not exist).

    Returns:
        The saved manifest.
    """
    path = Workspace.at(root).manifest_path(market)
    with _locked(path):
        manifest = _parse(path, market) if path.exists() else new_manifest(market)
        change(manifest)
        manifest["updated_at"] = utc_now()
        atomic_write_json(path, manifest)
    return manifest


def set_section(root: str | Path, market: str, section: str, value: Any) -> Manifest:
    """Replace one top-level section (``data``, ``stage1``, ...)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown manifest section {section!r}; expected one of {SECTIONS}")
    return update_manifest(root, market, lambda m: m.__setitem__(section, value))


def merge_stage1(root: str | Path, market: str, fields: dict[str, Any]) -> Manifest:
    """Merge ``fields`` into the ``stage1`` section (creating it)."""

    def change(m: Manifest) -> None:
        m["stage1"] = {**(m.get("stage1") or {}), **fields}

    return update_manifest(root, market, change)


def set_stage2(root: str | Path, market: str, key: str, value: Any) -> Manifest:
    """Set ``stage2.dataset`` or ``stage2.preflight``."""
    if key not in ("dataset", "preflight"):
        raise ValueError(f"stage2 key must be 'dataset' or 'preflight', got {key!r}")
    return update_manifest(root, market, lambda m: m["stage2"].__setitem__(key, value))


def append_run(root: str | Path, market: str, run: dict[str, Any]) -> Manifest:
    """Append one launch attempt to ``stage2.runs``."""
    return update_manifest(root, market, lambda m: m["stage2"]["runs"].append(run))


def update_last_run(root: str | Path, market: str, fields: dict[str, Any]) -> Manifest:
    """Merge ``fields`` into the most recent ``stage2.runs`` entry (e.g. finished_at, return_code)."""

    def change(m: Manifest) -> None:
        if not m["stage2"]["runs"]:
            raise ValueError("no stage2 run to update")
        m["stage2"]["runs"][-1].update(fields)

    return update_manifest(root, market, change)


def append_evaluation(root: str | Path, market: str, summary: dict[str, Any]) -> Manifest:
    """Append one evaluation summary."""
    return update_manifest(root, market, lambda m: m["evaluation"].append(summary))


def _parse(path: Path, market: str) -> Manifest:
    text = path.read_text(encoding="utf-8")
    try:
        manifest = json.loads(text)
        if not isinstance(manifest, dict):
            raise ValueError(f"top level is {type(manifest).__name__}, expected an object")
        missing = [k for k in ("schema_version", "market", *SECTIONS) if k not in manifest]
        if missing:
            raise ValueError(f"missing keys {missing}")
        if manifest["market"] != market:
            raise ValueError(f"market is {manifest['market']!r}, expected {market!r}")
    except ValueError as exc:
        backup = path.with_name(path.name + ".bak")
        shutil.copyfile(path, backup)
        raise DataError(
            f"{path}: cannot parse the manifest ({exc}); it was left untouched and copied to {backup}. "
            f"Fix or delete it, then re-run the stage"
        ) from None
    return manifest
