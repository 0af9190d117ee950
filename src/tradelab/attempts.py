"""Recorded work whose process is gone, and the bookkeeping of attempts that may be cut short.

Every writing stage runs under the market's lock (:func:`market_writer`, which wraps
:func:`tradelab.runlock.market_lock`) and leaves ``running`` records in the manifest stamped with the lock's token:
the ``stage1`` section, each ``stage2.runs`` attempt and the ``loop`` section. A process killed with SIGKILL (or a
machine that went away) cannot record how it stopped, so the next writer, and ``status``, find its records by their
token (:func:`tradelab.runlock.record_liveness`) and mark them ``interrupted`` (:func:`settle`). An interrupted
local-engine run names its last checkpoint, which a re-run can continue (``--resume-from``; the loop does it itself).

Two more pieces of attempt bookkeeping live here: the placeholder record a Stage 2 attempt writes before its engine
starts (:func:`stage2_attempt`), and where a Stage 1 run's experience records begin, with the records of a replaced
run set aside (:func:`stage1_experience_start`, :mod:`tradelab.setaside`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tradelab.errors import DataError, WorkspaceError
from tradelab.manifest import Manifest, append_run, load_manifest, update_manifest
from tradelab.manifest_schema import RunDataset, RunRecord, Stage1Section, Status
from tradelab.paths import Workspace
from tradelab.provenance import utc_now
from tradelab.runlock import LockOwner, current_token, market_lock, record_liveness

log = logging.getLogger(__name__)

KILLED = "its process (pid {pid} on host {host}) is gone without recording how it stopped (killed, or the machine " \
         "went down); found {found}"


@contextlib.contextmanager
def market_writer(root: str | Path, market: str, stage: str) -> Iterator[LockOwner]:
    """Hold the market's writer lock for the block; on first taking it, mark the records killed writers left.

    Args:
        root: Workspace root.
        market: Market name.
        stage: What takes the lock (shown to a second writer and by ``status``).

    Raises:
        WorkspaceError: Another process holds the lock (one line naming its command and pid).
    """
    outermost = current_token(root, market) is None
    with market_lock(root, market, stage) as owner:
        if outermost:
            for line in settle(root, market):
                log.warning("%s: %s", market, line)
        yield owner


def _killed(pid: int | None, host: str | None) -> str:
    return KILLED.format(pid=pid if pid is not None else "?", host=host or "?", found=utc_now())


def _stale(root: str | Path, market: str, record: dict[str, Any]) -> bool:
    return record.get("status") == "running" and record_liveness(
        root, market, pid=record.get("pid"), host=record.get("host"), token=record.get("lock_token")) == "stale"


def settle(root: str | Path, market: str) -> list[str]:
    """Mark every ``running`` record of ``market`` whose writer is gone as ``interrupted``; one line per record.

    Records whose writer runs on another host are left alone (their liveness cannot be checked from here). A
    manifest that cannot be read or written is left as it is (the stage that needs it reports that).
    """
    try:
        manifest = load_manifest(root, market)
    except DataError:
        return []
    if manifest is None or not _any_stale(root, market, manifest):
        return []
    lines: list[str] = []

    def change(m: Manifest) -> None:  # re-checked under the manifest's lock: a writer may have finished meanwhile
        lines.clear()
        _settle_stage1(root, market, m, lines)
        _settle_runs(root, market, m, lines)
        _settle_loop(root, market, m, lines)

    try:
        update_manifest(root, market, change)
    except WorkspaceError as exc:  # a read-only workspace: status still answers, writers fail on their own write
        log.warning("%s: stale records not marked (%s)", market, exc)
        return []
    return lines


def _any_stale(root: str | Path, market: str, m: Manifest) -> bool:
    records = [m.get("stage1"), m.get("loop"), *m["stage2"]["runs"]]
    return any(isinstance(r, dict) and _stale(root, market, r) for r in records)


def _settle_stage1(root: str | Path, market: str, m: Manifest, lines: list[str]) -> None:
    stage1 = m.get("stage1")
    if isinstance(stage1, dict) and _stale(root, market, stage1):
        stage1.update(status="interrupted", error=_killed(stage1.get("pid"), stage1.get("host")))
        lines.append(f"Stage 1 run {stage1.get('run_id') or stage1.get('started_at')} marked interrupted: "
                     f"{stage1['error']}")


def _settle_runs(root: str | Path, market: str, m: Manifest, lines: list[str]) -> None:
    from tradelab.grpo.engines.registry import ENGINES

    ws = Workspace.at(root)
    for index, run in enumerate(m["stage2"]["runs"]):
        if not (isinstance(run, dict) and _stale(root, market, run)):
            continue
        run.update(status="interrupted", finished_at=None, error=_killed(run.get("pid"), run.get("host")))
        engine = ENGINES.get(str(run.get("engine")))
        found = engine.interrupted_checkpoint(ws, market, RunRecord.model_validate(run)) if engine else None
        if found is not None:
            run.update(output_dir=str(found.parents[1]), checkpoint=ws.record(found) or str(found))
            run["error"] += f"; its last checkpoint is {found}: continue it with `python main.py stage2 --market " \
                            f"{market} --engine {run['engine']} --resume-from {found}`"
        lines.append(f"Stage 2 run {index + 1} ({run.get('engine')}, started {run.get('started_at')}) marked "
                     f"interrupted: {run['error']}")


def _settle_loop(root: str | Path, market: str, m: Manifest, lines: list[str]) -> None:
    loop = m.get("loop")
    if isinstance(loop, dict) and _stale(root, market, loop):
        where = loop.get("activity") or "?"
        loop.update(status="interrupted",
                    error=f"{where}: {_killed(loop.get('pid'), loop.get('host'))}")
        for iteration in loop.get("iterations") or []:
            stages = iteration.get("stages") if isinstance(iteration, dict) else None
            if isinstance(stages, dict):
                iteration["stages"] = {k: "interrupted" if v == "running" else v for k, v in stages.items()}
        lines.append(f"loop marked interrupted while {where}; `loop` with the same arguments resumes it")


# ----------------------------------------------------------------------------------------------------- Stage 2
@contextlib.contextmanager
def stage2_attempt(root: str | Path, market: str, engine: str, *, profile: str,
                   dataset: RunDataset) -> Iterator[RunRecord]:
    """Record a ``running`` placeholder in ``stage2.runs`` for the block: the attempt is on record before its
    engine starts, so a kill at any moment leaves a record that :func:`settle` marks ``interrupted``.

    The engine's own record of the attempt replaces the placeholder (:func:`tradelab.manifest.append_run`). A
    placeholder still ``running`` when the block ends (the engine stopped before it recorded anything) is closed
    here: ``failed`` on an error, ``interrupted`` on Ctrl-C.
    """
    owner_token = current_token(root, market)
    placeholder = RunRecord(engine=engine, status="running", started_at=utc_now(), profile=profile,
                            dataset=dataset, pid=os.getpid(), host=socket.gethostname(), lock_token=owner_token)
    append_run(root, market, placeholder)
    try:
        yield placeholder
    except BaseException as exc:
        status: Status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        _close_placeholder(root, market, engine, owner_token, status, f"{type(exc).__name__}: {exc}"[:500])
        raise
    _close_placeholder(root, market, engine, owner_token, "failed", "the engine returned without recording its run")


def _close_placeholder(root: str | Path, market: str, engine: str, token: str | None, status: Status,
                       error: str) -> None:
    def open_placeholder(m: Manifest | None) -> dict[str, Any] | None:
        runs = m["stage2"]["runs"] if m is not None else []
        last = runs[-1] if runs else None
        if isinstance(last, dict) and last.get("status") == "running" and last.get("engine") == engine \
                and last.get("lock_token") == token:
            return last
        return None

    def change(m: Manifest) -> None:
        last = open_placeholder(m)
        if last is not None:
            last.update(status=status, finished_at=utc_now(), error=error)

    if open_placeholder(load_manifest(root, market)) is not None:
        update_manifest(root, market, change)


def interrupted_run(root: str | Path, market: str, engine: str, dataset_sha256s: dict[str, str]
                    ) -> RunRecord | None:
    """The market's last Stage 2 attempt when it is an interrupted ``engine`` run on the same dataset files that
    left a checkpoint to continue; else None."""
    runs = [RunRecord.model_validate(r) for r in (load_manifest(root, market) or {"stage2": {"runs": []}})
            ["stage2"]["runs"]]
    last = runs[-1] if runs else None
    if last is None or last.engine != engine or last.status != "interrupted" or last.checkpoint is None:
        return None
    if last.dataset is None or any(last.dataset.sha256s.get(k) != v for k, v in dataset_sha256s.items()
                                   if k in ("train", "val")):
        return None
    return last


# ----------------------------------------------------------------------------------------------------- Stage 1
def stage1_experience_start(root: str | Path, market: str, previous: Stage1Section | None, *, resume: bool,
                            run_id: str) -> int:
    """Where this Stage 1 run's experience records begin, setting aside those of a run it replaces.

    A ``--resume`` run continues the previous run when that one did not complete, so their records are one run's and
    keep the previous start. A fresh run starts at the end of the file; when the previous run did not complete
    (killed, interrupted, failed), the fresh run writes its records again, so that run's are set aside.
    """
    from tradelab.setaside import set_aside

    path = Workspace.at(root).experience_path(market)
    size = path.stat().st_size if path.is_file() else 0
    unfinished = previous is not None and previous.status != "completed" and previous.experience_from_byte is not None
    if unfinished and resume:
        return int(previous.experience_from_byte)  # type: ignore[union-attr]
    if unfinished and not resume:
        set_aside(path, int(previous.experience_from_byte),  # type: ignore[union-attr]
                  reason=f"Stage 1 run {previous.run_id or previous.started_at} did not complete "  # type: ignore
                         f"({previous.status}); {run_id} starts it afresh")
    return size

