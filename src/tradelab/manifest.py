"""The per-market Phase 3 manifest: ``models/phase3_hybrid/<MKT>/phase3_stage_manifest.json``.

One module owns reading and writing it (ARCHITECTURE.md §11). Sections are plain JSON objects:

- ``data``: bars_path, sha256, rows, start, end, train_end, holdout_start
- ``stage1``: status, timings, seeds, config hash, git SHA, versions, artifact paths, experience and LLM stats
- ``stage2``: ``dataset`` (last export), ``preflight`` (last report), ``runs`` (every launch attempt, appended)
- ``evaluation``: list of report summaries, appended

Every change goes through :func:`update_manifest`, which holds an exclusive lock, re-reads the file, applies the
change and saves it atomically. A file that fails to parse, or parses to the wrong shape (``stage2: null``,
``stage1: "done"``), is never overwritten: the error names it and a ``.bak`` copy is kept beside it. A manifest
from a newer tradelab is refused untouched; one from an older schema is migrated in memory and saved in the new
form by the next change.

Paths inside the workspace are recorded relative to the root (:meth:`tradelab.paths.Workspace.record`) and
resolved at use (:meth:`tradelab.paths.Workspace.resolve`), so a copied or moved workspace uses its own files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import atomic_write_json, writing
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

log = logging.getLogger(__name__)

Manifest = dict[str, Any]

SECTIONS: tuple[str, ...] = ("data", "stage1", "stage2", "evaluation")

MANIFEST_SCHEMA_VERSION = 2
"""Version of the manifest layout. 2: workspace-relative paths; ``stage1`` records pid, host, the model's sha256
and the last completed run. Version 1 (absolute paths) is migrated on read."""

STAGE1_STATUSES: tuple[str, ...] = ("running", "completed", "interrupted", "failed")

_STAGE1_PATH_KEYS: tuple[str, ...] = (
    "model_checkpoint", "vecnormalize_path", "checkpoints_dir", "lora_adapter_path", "experience_path",
)


def new_manifest(market: str) -> Manifest:
    """An empty manifest for ``market`` with every section present."""
    now = utc_now()
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
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
    return _parse(path, market, root)


def require_stage1(root: str | Path, market: str) -> Manifest:
    """The manifest of a market whose Stage 1 completed, else a :class:`StageNotReady` that says how to get one.

    A Stage 1 section that is not ``completed`` but keeps the previous completed run (``last_completed``: a run that
    was killed, interrupted or failed after that one) gives the manifest with that completed section in its place,
    since that run's ``final.zip`` is what is on disk. A run that is still alive is waited for, not read around.
    """
    manifest = load_manifest(root, market)
    section = (manifest or {}).get("stage1") or {}
    found = section.get("status", "missing")
    if found == "completed":
        return manifest  # type: ignore[return-value]
    path = Workspace.at(root).manifest_path(market)
    if found == "running":
        from tradelab.runlock import run_liveness

        liveness = run_liveness(root, market, section)
        if liveness != "stale":
            where = f"pid {section.get('pid', '?')} on host {section.get('host', '?')}"
            raise StageNotReady(
                f"{path}: Stage 1 for {market} is running ({where}, started {section.get('started_at')}); wait "
                f"for it to finish"
                + (", or if that run is gone, run `python main.py stage1 --market {market} --resume`"
                   if liveness == "unknown" else "")
            )
        found = f"running, but its process ({section.get('pid', '?')} on {section.get('host', '?')}) is gone"
    previous = section.get("last_completed")
    if isinstance(previous, dict) and previous.get("status") == "completed":
        log.warning("%s: stage1 is %s; using the last completed run (completed %s)", path, found,
                    previous.get("completed_at"))
        return {**manifest, "stage1": previous}  # type: ignore[dict-item]
    raise StageNotReady(
        f"{path}: stage1.status is {found!r}, this step needs a completed Stage 1; run "
        f"`python main.py stage1 --market {market} --test` (or a full run; --resume continues from the last "
        f"checkpoint) first"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_file = path.with_name(path.name + ".lock")
    with writing(lock_file):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_file, "w")  # noqa: SIM115 - held for the block below
    with lock:
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
        manifest = _parse(path, market, root) if path.exists() else new_manifest(market)
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


def _parse(path: Path, market: str, root: str | Path) -> Manifest:
    """Read, check and (for an older schema) migrate a manifest file.

    Raises:
        DataError: The file is not UTF-8 JSON, or not shaped like a manifest (a ``.bak`` copy is written), or it
            comes from a newer tradelab (left as it is).
    """
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
        problems = shape_problems(manifest, market)
        if problems:
            raise ValueError("; ".join(problems[:3]))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        backup = path.with_name(path.name + ".bak")
        try:
            shutil.copyfile(path, backup)
            kept = f"it was left untouched and copied to {backup}"
        except OSError:
            kept = "it was left untouched"
        reason = " ".join(str(exc).split())[:300]
        raise DataError(
            f"{path}: not a valid manifest ({reason}); {kept}. Fix it from the .bak copy, or delete it and re-run "
            f"stage1 for {market}"
        ) from None
    version = manifest["schema_version"]
    if version > MANIFEST_SCHEMA_VERSION:
        raise DataError(
            f"{path}: schema_version {version} was written by a newer tradelab (this one reads up to "
            f"{MANIFEST_SCHEMA_VERSION}); it was left untouched. Upgrade tradelab, or use another --root"
        )
    if version < MANIFEST_SCHEMA_VERSION:
        manifest = migrate(manifest, Workspace.at(root))
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shape_problems(manifest: Any, market: str) -> list[str]:
    """What is wrong with a parsed manifest's shape (empty when it can be used)."""
    if not isinstance(manifest, dict):
        return [f"top level is {type(manifest).__name__}, expected an object"]
    missing = [k for k in ("schema_version", "market", *SECTIONS) if k not in manifest]
    if missing:
        return [f"missing keys {missing}"]
    problems = []
    if not _is_int(manifest["schema_version"]) or manifest["schema_version"] < 1:
        problems.append(f"schema_version is {manifest['schema_version']!r}, expected a positive integer")
    if manifest["market"] != market:
        problems.append(f"market is {manifest['market']!r}, expected {market!r}")
    for key in ("data", "stage1"):
        if manifest[key] is not None and not isinstance(manifest[key], dict):
            problems.append(f"{key} is {manifest[key]!r}, expected an object or null")
    problems += _stage1_problems(manifest["stage1"]) if isinstance(manifest["stage1"], dict) else []
    problems += _data_problems(manifest["data"]) if isinstance(manifest["data"], dict) else []
    stage2 = manifest["stage2"]
    if not isinstance(stage2, dict):
        problems.append(f"stage2 is {stage2!r}, expected an object with dataset, preflight and runs")
    else:
        for key in ("dataset", "preflight"):
            if stage2.get(key) is not None and not isinstance(stage2[key], dict):
                problems.append(f"stage2.{key} is {stage2[key]!r}, expected an object or null")
        dataset = stage2.get("dataset")
        for key in ("counts", "paths", "sha256s") if isinstance(dataset, dict) else ():
            if not isinstance(dataset.get(key), dict):
                problems.append(f"stage2.dataset.{key} is {dataset.get(key)!r}, expected an object")
        runs = stage2.get("runs", [])
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            problems.append("stage2.runs must be a list of objects")
    evaluation = manifest["evaluation"]
    if not isinstance(evaluation, list) or not all(isinstance(e, dict) for e in evaluation):
        problems.append("evaluation must be a list of objects")
    return problems


def _data_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("bars_path", "sha256", "start", "end", "train_end", "holdout_start"):
        if data.get(key) is not None and not isinstance(data[key], str):
            problems.append(f"data.{key} is {data[key]!r}, expected a string or null")
    if data.get("rows") is not None and not _is_int(data["rows"]):
        problems.append(f"data.rows is {data['rows']!r}, expected an integer")
    return problems


def _stage1_problems(stage1: dict[str, Any]) -> list[str]:
    problems = []
    status = stage1.get("status")
    if status is not None and status not in STAGE1_STATUSES:
        problems.append(f"stage1.status is {status!r}, expected one of {list(STAGE1_STATUSES)}")
    for key in _STAGE1_PATH_KEYS:
        if stage1.get(key) is not None and not isinstance(stage1[key], str):
            problems.append(f"stage1.{key} is {stage1[key]!r}, expected a path string or null")
    for key in ("base_model", "last_completed", "llm_stats", "hybrid_stats", "prompts"):
        if stage1.get(key) is not None and not isinstance(stage1[key], dict):
            problems.append(f"stage1.{key} is {stage1[key]!r}, expected an object or null")
    if isinstance(stage1.get("base_model"), dict):
        local = stage1["base_model"].get("local_path")
        if local is not None and not isinstance(local, str):
            problems.append(f"stage1.base_model.local_path is {local!r}, expected a path string")
    for key in ("total_timesteps", "seed", "pid", "experience_samples", "experience_with_outcome"):
        if stage1.get(key) is not None and not _is_int(stage1[key]):
            problems.append(f"stage1.{key} is {stage1[key]!r}, expected an integer")
    if stage1.get("test_mode") is not None and not isinstance(stage1["test_mode"], bool):
        problems.append(f"stage1.test_mode is {stage1['test_mode']!r}, expected true or false")
    return problems


def migrate(manifest: Manifest, ws: Workspace) -> Manifest:
    """Bring an older manifest up to :data:`MANIFEST_SCHEMA_VERSION` (pure: returns a new dict).

    1 -> 2: absolute paths inside the workspace become relative to its root; sections gain their defaults.
    """
    migrated = json.loads(json.dumps(manifest))
    stage2 = migrated["stage2"]
    stage2.setdefault("dataset", None)
    stage2.setdefault("preflight", None)
    stage2.setdefault("runs", [])
    data = migrated.get("data")
    if isinstance(data, dict) and isinstance(data.get("bars_path"), str):
        data["bars_path"] = ws.record(data["bars_path"])
    stage1 = migrated.get("stage1")
    for section in (stage1, (stage1 or {}).get("last_completed")):
        if not isinstance(section, dict):
            continue
        for key in _STAGE1_PATH_KEYS:
            if isinstance(section.get(key), str):
                section[key] = ws.record(section[key])
        base = section.get("base_model")
        if isinstance(base, dict) and isinstance(base.get("local_path"), str):
            base["local_path"] = ws.record(base["local_path"])
    dataset = stage2.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("paths"), dict):
        dataset["paths"] = {k: ws.record(v) if isinstance(v, str) else v for k, v in dataset["paths"].items()}
    log.info("manifest for %s migrated from schema %s to %s", migrated.get("market"), manifest["schema_version"],
             MANIFEST_SCHEMA_VERSION)
    migrated["schema_version"] = MANIFEST_SCHEMA_VERSION
    return migrated
