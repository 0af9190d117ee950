"""One Stage 1 run per market at a time: an exclusive ``flock`` on ``models/phase3_hybrid/<MKT>/stage1.lock``.

The lock, not the manifest's ``status`` field, is what keeps two runs apart: the kernel releases it when its process
dies, however it dies, so a killed run never blocks the next one. The lock file holds the owner's pid and host for
messages. The manifest records the same pid and host, so a ``running`` status left by a killed run can be told from
a live one (:func:`run_liveness`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tradelab.errors import WorkspaceError
from tradelab.fileio import writing
from tradelab.manifest_schema import Stage1Section
from tradelab.paths import Workspace

LOCK_NAME = "stage1.lock"


def owner() -> dict[str, Any]:
    """This process as a lock owner: ``{pid, host}``."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def lock_path(root: str | Path, market: str) -> Path:
    """The market's Stage 1 lock file."""
    return Workspace.at(root).market_model_dir(market) / LOCK_NAME


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def stage1_lock(root: str | Path, market: str, *, started_at: str) -> Iterator[dict[str, Any]]:
    """Hold the market's Stage 1 lock for the block; yields ``{pid, host}`` of this process.

    Raises:
        WorkspaceError: Another process holds the lock (the message names its pid, host and start time).
    """
    path = lock_path(root, market)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = _read_owner(path)
            raise WorkspaceError(
                f"{path}: another Stage 1 run for {market} is in progress (pid {held.get('pid', '?')} on host "
                f"{held.get('host', '?')}, started {held.get('started_at', '?')}); wait for it to finish or stop it "
                f"(Ctrl-C saves a checkpoint), then run stage1 again"
            ) from None
        me = owner()
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({**me, "started_at": started_at}))
        handle.flush()
        try:
            yield me
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def lock_held(root: str | Path, market: str) -> bool:
    """Whether some process (this one included) holds the market's Stage 1 lock right now."""
    path = lock_path(root, market)
    if not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_liveness(root: str | Path, market: str, section: Stage1Section | Mapping[str, Any]) -> str:
    """Whether the run a ``running`` Stage 1 section (typed, or as the manifest holds it) describes is still going.

    Returns:
        ``"alive"``, ``"stale"`` (its process is gone: killed, crashed, machine rebooted) or ``"unknown"`` (it ran on
        another host, where neither its pid nor its lock can be checked from here).
    """
    stage1 = section if isinstance(section, Stage1Section) else Stage1Section.model_validate(section)
    pid, host = stage1.pid, stage1.host
    if host is not None and host != socket.gethostname():
        return "unknown"
    if not lock_held(root, market):
        return "stale"
    if pid is not None and not _pid_alive(pid):
        return "stale"
    return "alive"
