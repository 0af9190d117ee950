"""One writer per market at a time: an exclusive ``flock`` on ``locks/<MKT>.lock`` for every stage that writes.

Stage 1, the Stage 2 export and engine, an evaluation's report folder, a recorded preflight, the bars (``data
generate`` / ``import``) and the loop all take :func:`market_lock` before they write anything of that market. The
kernel releases a ``flock`` when its process dies, however it dies, so a killed run never blocks the next one; the
lock, not a manifest ``status``, keeps two writers apart. A second writer gets a :class:`WorkspaceError` (exit 2)
that names the running command and its pid.

The lock is re-entrant within one process: the loop holds it and calls the stage functions, which take it again
(two ``open()`` + ``flock`` in one process would conflict with each other). A forked child does not inherit it.

Who holds the lock is written beside it, atomically, in ``locks/<MKT>.owner.json`` (:class:`LockOwner`: pid, host,
the process's start time, the command, the stage and what it is doing now, and a token for this tenure). Readers
(``status``, ``preflight --json``) never take the lock: :func:`lock_state` judges that file by pid, host and start
time, so a reader can never make a writer fail. Every ``running`` record a writer leaves in the manifest carries the
tenure's token, so :func:`record_liveness` tells a record whose writer still runs from one a killed process left
(the next writer and ``status`` mark those ``interrupted``: :mod:`tradelab.attempts`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from tradelab.errors import WorkspaceError
from tradelab.fileio import atomic_write_json, writing
from tradelab.manifest_schema import Stage1Section
from tradelab.markets import validate_market_name
from tradelab.paths import Workspace
from tradelab.provenance import utc_now

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"
"""The workspace folder holding one lock (and its owner file) per market; outside the market's own folders, which
a Ray loop task replaces wholesale when the parent adopts its outputs."""

LockStatus = Literal["free", "held", "stale", "unknown"]
Liveness = Literal["alive", "stale", "unknown"]


class LockOwner(BaseModel):
    """Who holds a market's lock (``locks/<MKT>.owner.json``).

    Attributes:
        pid: The holder's process id.
        host: Its host name.
        started_at: When it took the lock (UTC, ISO-8601).
        proc_start: The process's start time (boot id and start tick, Linux), so a recycled pid is not taken for the
            holder; None where it cannot be read.
        token: This tenure's id; ``running`` records written under the lock carry it.
        stage: What took the lock (``loop``, ``stage1``, ``stage2 export``, ``evaluation``, ...).
        command: The command line that runs it.
        doing: What the holder does now, when it differs from ``stage`` (the loop's current stage).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    pid: int
    host: str
    started_at: str
    proc_start: str | None = None
    token: str
    stage: str
    command: str
    doing: str | None = None

    def describe(self) -> str:
        """``loop (pid 123 on host h, since ..., now: stage2 local): python main.py loop ...``"""
        now = f", now: {self.doing}" if self.doing and self.doing != self.stage else ""
        return (f"{self.stage} (pid {self.pid} on host {self.host}, since {self.started_at}{now}): "
                f"`{self.command}`")


@dataclass(frozen=True)
class LockState:
    """What a reader sees of a market's lock.

    Attributes:
        state: ``free`` (no owner recorded), ``held`` (its owner runs), ``stale`` (its owner is gone: the next writer
            takes the lock over) or ``unknown`` (held from another host, whose processes cannot be checked here).
        owner: The recorded owner (None when free).
        path: The lock file.
    """

    state: LockStatus
    owner: LockOwner | None
    path: Path

    def to_dict(self) -> dict[str, Any]:
        """For ``status --json``: the state, the lock file and the owner's fields."""
        return {"state": self.state, "path": str(self.path),
                **(self.owner.model_dump() if self.owner is not None else {})}


@dataclass
class _Held:
    handle: IO[str]
    owner: LockOwner
    pid: int
    stages: list[str] = field(default_factory=list)


_HELD: dict[Path, _Held] = {}
_GUARD = threading.RLock()
os.register_at_fork(after_in_child=_HELD.clear)  # a forked child does not hold its parent's locks


def lock_path(root: str | Path, market: str) -> Path:
    """The market's lock file, ``locks/<MKT>.lock``."""
    return Workspace.at(root).root / LOCKS_DIR / f"{validate_market_name(market)}.lock"


def owner_path(root: str | Path, market: str) -> Path:
    """The file naming the lock's holder, ``locks/<MKT>.owner.json``."""
    return Workspace.at(root).root / LOCKS_DIR / f"{validate_market_name(market)}.owner.json"


@lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """``<boot id>:<start tick>`` of process ``pid`` (Linux ``/proc``), or None when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        ticks = stat[stat.rindex(")") + 2:].split()[19]  # field 22, counted after the "(comm)" field
    except (OSError, ValueError, IndexError):
        return None
    return f"{_boot_id()}:{ticks}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _command_line() -> str:
    return shlex.join([Path(sys.executable).name, *sys.argv])


def read_owner(root: str | Path, market: str) -> LockOwner | None:
    """The recorded holder of the market's lock, or None (none recorded, or an unreadable file)."""
    try:
        return LockOwner.model_validate(json.loads(owner_path(root, market).read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return None


def _owner_alive(owner: LockOwner) -> bool:
    if owner.pid == os.getpid() and owner.token in {h.owner.token for h in _HELD.values()}:
        return True
    if owner.proc_start is not None:
        return process_start(owner.pid) == owner.proc_start
    return _pid_alive(owner.pid)


def lock_state(root: str | Path, market: str) -> LockState:
    """Who holds the market's lock, judged by the owner file's pid, host and process start time (no ``flock``)."""
    path = lock_path(root, market)
    owner = read_owner(root, market)
    if owner is None:
        return LockState("free", None, path)
    if owner.host != socket.gethostname():
        return LockState("unknown", owner, path)
    return LockState("held" if _owner_alive(owner) else "stale", owner, path)


def current_token(root: str | Path, market: str) -> str | None:
    """This process's lock token for the market while it holds the lock, else None."""
    held = _HELD.get(lock_path(root, market))
    return held.owner.token if held is not None and held.pid == os.getpid() else None


def _write_owner(root: str | Path, market: str, owner: LockOwner) -> None:
    atomic_write_json(owner_path(root, market), owner.model_dump())


def _update_doing(root: str | Path, market: str, held: _Held) -> None:
    """Rewrite the owner file with what the holder does now (best effort: it only feeds ``status``)."""
    doing = held.stages[-1] if len(held.stages) > 1 else None
    held.owner = held.owner.model_copy(update={"doing": doing})
    try:
        _write_owner(root, market, held.owner)
    except WorkspaceError as exc:
        log.warning("lock owner of %s not updated: %s", market, exc)


def busy_message(root: str | Path, market: str) -> str:
    """The one line a second writer gets."""
    owner = read_owner(root, market)
    path = lock_path(root, market)
    held_by = owner.describe() if owner is not None else "another tradelab process"
    return (f"{market} is busy: {held_by} holds {path}; wait for it to finish or stop it (Ctrl-C), then run this "
            f"again (`python main.py status --market {market}` shows who holds it)")


@contextlib.contextmanager
def market_lock(root: str | Path, market: str, stage: str) -> Iterator[LockOwner]:
    """Hold the market's writer lock for the block (re-entrant within this process); yields its owner record.

    Args:
        root: Workspace root.
        market: Market name.
        stage: What takes the lock (``loop``, ``stage1``, ``stage2 export``, ``evaluation``, ...); a nested
            acquisition shows as what the holder is doing now.

    Raises:
        WorkspaceError: Another process holds the lock (the message names its command, stage and pid), or the
            lock folder cannot be written.
    """
    path = lock_path(root, market)
    with _GUARD:
        held = _HELD.get(path)
        if held is not None and held.pid == os.getpid():
            held.stages.append(stage)
            _update_doing(root, market, held)
            nested = True
        else:
            nested = False
            held = _acquire(root, market, path, stage)
    try:
        yield held.owner
    finally:
        with _GUARD:
            if nested:
                held.stages.pop()
                _update_doing(root, market, held)
            else:
                _release(root, market, path, held)


def _acquire(root: str | Path, market: str, path: Path, stage: str) -> _Held:
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until release
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WorkspaceError(busy_message(root, market)) from None
    previous = read_owner(root, market)
    if previous is not None:
        log.warning("%s: taking over the lock of %s, whose process is gone", path, previous.describe())
    me = os.getpid()
    owner = LockOwner(pid=me, host=socket.gethostname(), started_at=utc_now(), proc_start=process_start(me),
                      token=uuid.uuid4().hex[:16], stage=stage, command=_command_line())
    try:
        _write_owner(root, market, owner)
    except BaseException:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        raise
    held = _Held(handle, owner, me, [stage])
    _HELD[path] = held
    return held


def _release(root: str | Path, market: str, path: Path, held: _Held) -> None:
    _HELD.pop(path, None)
    try:
        owner_path(root, market).unlink(missing_ok=True)
    except OSError as exc:  # a read-only folder: the owner file stays, and reads as stale once this process ends
        log.warning("%s: owner file not removed (%s)", owner_path(root, market), exc)
    finally:
        fcntl.flock(held.handle, fcntl.LOCK_UN)
        held.handle.close()


def record_liveness(root: str | Path, market: str, *, pid: int | None, host: str | None,
                    token: str | None) -> Liveness:
    """Whether the process that wrote a ``running`` record (its pid, host and lock token) is still running it.

    Returns:
        ``"alive"`` (the lock's live holder wrote it), ``"stale"`` (its process is gone: killed, crashed, machine
        rebooted; or the lock has a new holder since) or ``"unknown"`` (it ran on another host, which cannot be
        checked from here).
    """
    if host is not None and host != socket.gethostname():
        return "unknown"
    state = lock_state(root, market)
    if state.state != "held" or state.owner is None:
        return "stale"
    if token is not None:
        return "alive" if state.owner.token == token else "stale"
    return "alive" if pid is not None and state.owner.pid == pid else "stale"


def run_liveness(root: str | Path, market: str, section: Stage1Section | Mapping[str, Any]) -> Liveness:
    """:func:`record_liveness` of a ``running`` Stage 1 section (typed, or as the manifest holds it)."""
    stage1 = section if isinstance(section, Stage1Section) else Stage1Section.model_validate(section)
    return record_liveness(root, market, pid=stage1.pid, host=stage1.host, token=stage1.lock_token)
