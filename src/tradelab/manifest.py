"""The per-market Phase 3 manifest: ``models/phase3_hybrid/<MKT>/phase3_stage_manifest.json``.

One module owns reading and writing it (ARCHITECTURE.md §11); :mod:`tradelab.manifest_schema` declares its shape
once, as pydantic models that every read is checked against and that readers get typed sections from
(:func:`stage1_of`, :func:`stage2_of`, :func:`data_of`, :func:`evaluations_of`, :func:`loop_of`). Sections:

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

from pydantic import BaseModel

from tradelab.config.profile import DEFAULT_PROFILE, SMOKE_PROFILE
from tradelab.errors import DataError, StageNotReady
from tradelab.fileio import atomic_write_json, writing
from tradelab.manifest_schema import (
    STAGE1_PATH_KEYS,
    STATUSES,
    DataSection,
    EvaluationSummary,
    LoopSection,
    ManifestModel,
    RunOutput,
    RunRecord,
    Stage1Section,
    Stage2Section,
    Status,
    data_of,
    evaluations_of,
    loop_of,
    problems_of,
    stage1_of,
    stage2_of,
    undeclared_keys,
)
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

log = logging.getLogger(__name__)

Manifest = dict[str, Any]

SECTIONS: tuple[str, ...] = ("data", "stage1", "stage2", "evaluation")

MANIFEST_SCHEMA_VERSION = 4
"""Version of the manifest layout. 2: workspace-relative paths; ``stage1`` records pid, host, the model's sha256
and the last completed run. 3: a Stage 2 run names its weights in one typed ``output`` (an adapter on its base, or a
full model) instead of ``adapter_path`` / ``hf_model_path``. 4: every record names its run ``profile`` instead of a
test-or-not flag. Older versions are migrated on read."""

__all__ = [
    "MANIFEST_SCHEMA_VERSION", "SECTIONS", "STATUSES", "DataSection", "EvaluationSummary", "LoopSection",
    "Manifest", "ManifestModel", "RunOutput", "RunRecord", "Stage1Section", "Stage2Section", "Status",
    "append_evaluation", "append_run", "data_of", "evaluations_of", "load_manifest", "loop_of", "merge_stage1",
    "migrate", "new_manifest", "require_stage1", "set_loop", "set_section", "set_stage2", "shape_problems",
    "stage1_of", "stage2_of", "update_last_run", "update_manifest",
]


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
    stage1 = stage1_of(manifest)
    path = Workspace.at(root).manifest_path(market)
    if manifest is None or stage1 is None:
        raise StageNotReady(
            f"{path if manifest is not None else Workspace.at(root).market_model_dir(market)}: {market} has no "
            f"Stage 1 yet; run `python main.py stage1 --market {market} --test` (or a full run) first"
        )
    found = stage1.status or "missing"
    if found == "completed":
        return manifest
    if found == "running":
        from tradelab.runlock import run_liveness

        liveness = run_liveness(root, market, stage1)
        if liveness != "stale":
            where = f"pid {stage1.pid or '?'} on host {stage1.host or '?'}"
            raise StageNotReady(
                f"{path}: Stage 1 for {market} is running ({where}, started {stage1.started_at}); wait "
                f"for it to finish"
                + (", or if that run is gone, run `python main.py stage1 --market {market} --resume`"
                   if liveness == "unknown" else "")
            )
        found = f"running, but its process ({stage1.pid or '?'} on {stage1.host or '?'}) is gone"
    if found in ("interrupted", "failed") and stage1.error:
        found = f"{found}: {stage1.error}"
    previous = stage1.last_completed
    if previous is not None and previous.status == "completed":
        log.warning("%s: stage1 is %s; using the last completed run (completed %s)", path, found,
                    previous.completed_at)
        return {**manifest, "stage1": previous.record()}
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

    Raises:
        ValueError: The change adds a key no section declares (:func:`tradelab.manifest_schema.undeclared_keys`), or
            gives a declared key a value of the wrong type; nothing is written.
    """
    path = Workspace.at(root).manifest_path(market)
    with _locked(path):
        manifest = _parse(path, market, root) if path.exists() else new_manifest(market)
        kept = undeclared_keys(manifest)
        change(manifest)
        problems = problems_of(manifest)
        if problems:
            raise ValueError(f"{path}: refusing to write a wrongly typed manifest: {'; '.join(problems[:3])}")
        added = sorted(undeclared_keys(manifest) - kept)
        if added:
            raise ValueError(f"{path}: refusing to write undeclared manifest keys {added}; declare them in "
                             f"tradelab/manifest_schema.py first")
        manifest["updated_at"] = utc_now()
        atomic_write_json(path, manifest)
    return manifest


def _plain(value: Any) -> Any:
    """A section as the JSON the manifest keeps (typed models dumped with the keys that were set)."""
    return value.record() if isinstance(value, BaseModel) else value


def set_section(root: str | Path, market: str, section: str, value: Any) -> Manifest:
    """Replace one top-level section (``data``, ``stage1``, ...)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown manifest section {section!r}; expected one of {SECTIONS}")
    return update_manifest(root, market, lambda m: m.__setitem__(section, _plain(value)))


def merge_stage1(root: str | Path, market: str, fields: dict[str, Any]) -> Manifest:
    """Merge ``fields`` into the ``stage1`` section (creating it)."""

    def change(m: Manifest) -> None:
        m["stage1"] = {**(m["stage1"] if m["stage1"] is not None else {}), **fields}

    return update_manifest(root, market, change)


def set_stage2(root: str | Path, market: str, key: str, value: Any) -> Manifest:
    """Set ``stage2.dataset`` or ``stage2.preflight``."""
    if key not in ("dataset", "preflight"):
        raise ValueError(f"stage2 key must be 'dataset' or 'preflight', got {key!r}")
    return update_manifest(root, market, lambda m: m["stage2"].__setitem__(key, _plain(value)))


def _stamped(root: str | Path, market: str, run: RunRecord) -> tuple[dict[str, Any], str | None]:
    """``run`` as the manifest keeps it, and the market-lock token of this process. A record not yet stamped is
    stamped first (in place, so the caller's record matches the manifest's) with the process and lock tenure that
    wrote it."""
    from tradelab.runlock import current_token

    token = current_token(root, market)
    if token is not None and run.lock_token is None:
        import os
        import socket

        run.pid, run.host, run.lock_token = os.getpid(), socket.gethostname(), token
    return run.record(), token


def append_run(root: str | Path, market: str, run: RunRecord) -> Manifest:
    """Record one launch attempt in ``stage2.runs``.

    When the last entry is this attempt's ``running`` placeholder (the same engine, written under this process's
    tenure of the market lock: :func:`tradelab.attempts.stage2_attempt`), ``run`` replaces it: one attempt, one
    entry. Otherwise ``run`` is appended.
    """
    record, token = _stamped(root, market, run)

    def change(m: Manifest) -> None:
        runs = m["stage2"]["runs"]
        last = runs[-1] if runs else None
        if token is not None and isinstance(last, dict) and last.get("status") == "running" \
                and last.get("lock_token") == token and last.get("engine") == run.engine:
            runs[-1] = record
        else:
            runs.append(record)

    return update_manifest(root, market, change)


def update_last_run(root: str | Path, market: str, run: RunRecord) -> Manifest:
    """Replace the most recent ``stage2.runs`` entry with ``run`` (the same attempt, now finished)."""
    record, _ = _stamped(root, market, run)

    def change(m: Manifest) -> None:
        if not m["stage2"]["runs"]:
            raise ValueError("no stage2 run to update")
        m["stage2"]["runs"][-1] = record

    return update_manifest(root, market, change)


def append_evaluation(root: str | Path, market: str, summary: EvaluationSummary) -> Manifest:
    """Append one evaluation summary."""
    return update_manifest(root, market, lambda m: m["evaluation"].append(summary.record()))


def set_loop(root: str | Path, market: str, loop: LoopSection) -> Manifest:
    """Replace the ``loop`` section with the loop's current state."""
    return update_manifest(root, market, lambda m: m.__setitem__("loop", loop.record()))


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


def shape_problems(manifest: Any, market: str) -> list[str]:
    """What is wrong with a parsed manifest's shape (empty when it can be used), checked against
    :class:`tradelab.manifest_schema.ManifestModel`."""
    if not isinstance(manifest, dict):
        return [f"top level is {type(manifest).__name__}, expected an object"]
    missing = [k for k in ("schema_version", "market", *SECTIONS) if k not in manifest]
    if missing:
        return [f"missing keys {missing}"]
    problems = []
    if manifest["market"] != market:
        problems.append(f"market is {manifest['market']!r}, expected {market!r}")
    return problems + problems_of(manifest)


def migrate(manifest: Manifest, ws: Workspace) -> Manifest:
    """Bring an older manifest up to :data:`MANIFEST_SCHEMA_VERSION` (pure: returns a new dict).

    1 -> 2: absolute paths inside the workspace become relative to its root; sections gain their defaults.
    2 -> 3: each Stage 2 run's ``adapter_path`` / ``hf_model_path`` becomes its typed ``output``.
    3 -> 4: each record's test-or-not flag becomes the name of the profile whose values it ran (:func:`_profile_names`).
    """
    migrated = json.loads(json.dumps(manifest))
    if migrated["schema_version"] < 2:
        _paths_to_relative(migrated, ws)
    for run in migrated["stage2"]["runs"]:
        if isinstance(run, dict):
            _run_output(run)
    _profile_names(migrated)
    log.info("manifest for %s migrated from schema %s to %s", migrated.get("market"), manifest["schema_version"],
             MANIFEST_SCHEMA_VERSION)
    migrated["schema_version"] = MANIFEST_SCHEMA_VERSION
    return migrated


def _paths_to_relative(migrated: Manifest, ws: Workspace) -> None:
    stage2 = migrated["stage2"]
    stage2.setdefault("dataset", None)
    stage2.setdefault("preflight", None)
    stage2.setdefault("runs", [])
    data = migrated.get("data")
    if isinstance(data, dict) and isinstance(data.get("bars_path"), str):
        data["bars_path"] = ws.record(data["bars_path"])
    stage1 = migrated.get("stage1")
    sections = [stage1, stage1.get("last_completed")] if isinstance(stage1, dict) else []
    for section in sections:
        if not isinstance(section, dict):
            continue
        for key in STAGE1_PATH_KEYS:
            if isinstance(section.get(key), str):
                section[key] = ws.record(section[key])
        base = section.get("base_model")
        if isinstance(base, dict) and isinstance(base.get("local_path"), str):
            base["local_path"] = ws.record(base["local_path"])
    dataset = stage2.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("paths"), dict):
        dataset["paths"] = {k: ws.record(v) if isinstance(v, str) else v for k, v in dataset["paths"].items()}


LEGACY_PROFILE_FLAG = "test_mode"
"""The boolean schema 3 and older recorded where schema 4 names the run profile."""


def _profile_names(migrated: Manifest) -> None:
    """Schema 3's flag as schema 4's ``profile``: the test values were the smoke profile's, the others the default's."""
    stage1, stage2, loop = migrated.get("stage1"), migrated["stage2"], migrated.get("loop")
    records = [stage1, stage1.get("last_completed") if isinstance(stage1, dict) else None, stage2.get("dataset"),
               *stage2["runs"], *(migrated.get("evaluation") or []), loop.get("settings") if isinstance(loop, dict)
               else None]
    for record in records:
        if isinstance(record, dict) and LEGACY_PROFILE_FLAG in record:
            flag = record.pop(LEGACY_PROFILE_FLAG)
            record.setdefault("profile", SMOKE_PROFILE if flag is True else DEFAULT_PROFILE)


def _run_output(run: dict[str, Any]) -> None:
    """Schema 2's ``adapter_path`` (local, verl) or ``hf_model_path`` (soft-grpo) as a schema-3 ``output``."""
    adapter, full = run.pop("adapter_path", None), run.pop("hf_model_path", None)
    described = run.pop("output", None)
    path, kind = (full, "full_model") if full else (adapter, "adapter")
    if run.get("status") != "completed" or not isinstance(path, str):
        return
    output: dict[str, Any] = {"kind": kind, "path": path}
    if isinstance(described, dict):
        output.update({k: described[k] for k in ("sha256", "architectures") if described.get(k) is not None})
    run["output"] = output
