"""The market lock: one writer per market, re-entrant in its process, judged by readers from pid, host and process
start time, taken over after its holder is killed; and the records a killed writer leaves are marked interrupted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradelab import manifest
from tradelab.attempts import market_writer, settle, stage2_attempt
from tradelab.errors import WorkspaceError
from tradelab.manifest_schema import RunDataset, RunRecord
from tradelab.runlock import (
    current_token,
    lock_state,
    market_lock,
    owner_path,
    process_start,
    read_owner,
    record_liveness,
)

HOLD = """
import sys, time
from tradelab.runlock import market_lock
with market_lock(sys.argv[1], "NQ", "stage2 export"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(root: Path) -> subprocess.Popen:
    """A process that takes NQ's lock and keeps it (until killed); returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_the_lock_is_reentrant_in_its_process_and_shows_what_it_does(tmp_path: Path) -> None:
    with market_lock(tmp_path, "NQ", "loop") as outer:
        assert current_token(tmp_path, "NQ") == outer.token and outer.pid == os.getpid()
        with market_lock(tmp_path, "NQ", "stage1") as inner:
            assert inner.token == outer.token
            assert read_owner(tmp_path, "NQ").doing == "stage1"
        assert read_owner(tmp_path, "NQ").doing is None
        state = lock_state(tmp_path, "NQ")
        assert state.state == "held" and state.owner.stage == "loop"
        assert state.owner.proc_start == process_start(os.getpid()) is not None
    assert lock_state(tmp_path, "NQ").state == "free" and current_token(tmp_path, "NQ") is None
    assert not owner_path(tmp_path, "NQ").exists()


def test_a_second_writer_gets_one_line_naming_the_holder(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    try:
        with pytest.raises(WorkspaceError) as info:
            with market_lock(tmp_path, "NQ", "loop"):
                pass
        message = str(info.value)
        assert "\n" not in message and f"pid {holder.pid}" in message and "stage2 export" in message
        assert "NQ is busy" in message and "python" in message
        # A reader never takes the lock: it sees the holder, alive.
        state = lock_state(tmp_path, "NQ")
        assert state.state == "held" and state.owner.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_after_sigkill_is_taken_over(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    token = read_owner(tmp_path, "NQ").token
    manifest.merge_stage1(tmp_path, "NQ", {"status": "running", "pid": holder.pid, "host": socket.gethostname(),
                                           "lock_token": token})
    assert record_liveness(tmp_path, "NQ", pid=holder.pid, host=socket.gethostname(), token=token) == "alive"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    state = lock_state(tmp_path, "NQ")
    assert state.state == "stale" and state.owner.pid == holder.pid  # what it left, judged gone
    assert record_liveness(tmp_path, "NQ", pid=holder.pid, host=socket.gethostname(), token=token) == "stale"
    with market_writer(tmp_path, "NQ", "stage1") as me:
        assert me.pid == os.getpid() and lock_state(tmp_path, "NQ").state == "held"
        section = manifest.load_manifest(tmp_path, "NQ")["stage1"]
        assert section["status"] == "interrupted" and f"pid {holder.pid}" in section["error"]


def test_a_recycled_pid_is_not_taken_for_the_holder(tmp_path: Path) -> None:
    with market_lock(tmp_path, "NQ", "loop") as me:
        pass
    # The owner file a killed process left, naming this (live) pid but another process start.
    from tradelab.fileio import atomic_write_json

    atomic_write_json(owner_path(tmp_path, "NQ"), {**me.model_dump(), "token": "other", "proc_start": "boot:1"})
    assert lock_state(tmp_path, "NQ").state == "stale"


def test_records_of_another_tenure_or_host(tmp_path: Path) -> None:
    with market_lock(tmp_path, "NQ", "loop") as me:
        host = socket.gethostname()
        assert record_liveness(tmp_path, "NQ", pid=me.pid, host=host, token=me.token) == "alive"
        assert record_liveness(tmp_path, "NQ", pid=me.pid, host=host, token="earlier") == "stale"
        assert record_liveness(tmp_path, "NQ", pid=1, host="gpu-pod-7", token="x") == "unknown"


def test_a_forked_child_does_not_hold_its_parents_lock(tmp_path: Path) -> None:
    with market_lock(tmp_path, "NQ", "loop"):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: taking the lock must fail, it is the parent's
            try:
                with market_lock(tmp_path, "NQ", "stage1"):
                    os.write(write, b"took it")
            except WorkspaceError:
                os.write(write, b"busy")
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 16) == b"busy"


def _dataset() -> RunDataset:
    return RunDataset(paths={"train": "t.parquet", "val": "v.parquet"}, sha256s={"train": "a", "val": "b"})


def test_a_stage2_attempt_is_on_record_before_its_engine_starts(tmp_path: Path) -> None:
    with market_writer(tmp_path, "NQ", "stage2 local") as me:
        with stage2_attempt(tmp_path, "NQ", "local", profile="smoke", dataset=_dataset()):
            (run,) = manifest.load_manifest(tmp_path, "NQ")["stage2"]["runs"]
            assert run["status"] == "running" and run["lock_token"] == me.token and run["pid"] == os.getpid()
            # The engine's own record of the attempt replaces the placeholder: one attempt, one entry.
            manifest.append_run(tmp_path, "NQ", RunRecord(engine="local", status="completed"))
    (run,) = manifest.load_manifest(tmp_path, "NQ")["stage2"]["runs"]
    assert run["status"] == "completed" and run["lock_token"] == me.token


def test_an_engine_that_fails_before_recording_leaves_a_failed_attempt(tmp_path: Path) -> None:
    with market_writer(tmp_path, "NQ", "stage2 local"):
        with pytest.raises(RuntimeError):
            with stage2_attempt(tmp_path, "NQ", "local", profile="smoke", dataset=_dataset()):
                raise RuntimeError("no model")
    (run,) = manifest.load_manifest(tmp_path, "NQ")["stage2"]["runs"]
    assert run["status"] == "failed" and "no model" in run["error"]


def test_settle_marks_a_killed_stage2_run_and_the_loop_interrupted(tmp_path: Path) -> None:
    holder = _holder(tmp_path)
    token = read_owner(tmp_path, "NQ").token
    stamp = {"pid": holder.pid, "host": socket.gethostname(), "lock_token": token}
    manifest.update_manifest(tmp_path, "NQ", lambda m: m["stage2"]["runs"].append(
        {"engine": "verl", "status": "running", "started_at": "2026-01-01T00:00:00Z", **stamp}))
    assert settle(tmp_path, "NQ") == []  # its writer is alive
    holder.kill()
    holder.wait()
    lines = settle(tmp_path, "NQ")
    (run,) = manifest.load_manifest(tmp_path, "NQ")["stage2"]["runs"]
    assert run["status"] == "interrupted" and "is gone" in run["error"] and len(lines) == 1
    assert settle(tmp_path, "NQ") == []


def test_status_shows_who_holds_the_lock_without_taking_it(tmp_path: Path) -> None:
    from tradelab.cli.render import lock_line
    from tradelab.stages import status

    holder = _holder(tmp_path)
    try:
        market = status(tmp_path, "NQ")["markets"][0]
        assert market["lock"]["state"] == "held" and market["lock"]["pid"] == holder.pid
        assert lock_line(market["lock"]).startswith("held by stage2 export: pid")
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    market = status(tmp_path, "NQ")["markets"][0]
    assert market["lock"]["state"] == "stale" and "whose process is gone" in lock_line(market["lock"])


def test_an_engine_subprocess_does_not_outlive_a_killed_tradelab(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from tradelab.grpo.engines.launch import stream\n"
            "stream([sys.executable, '-c', 'import os, time; print(os.getpid(), flush=True); time.sleep(120)'],\n"
            "       Path(sys.argv[1]), {}, Path(sys.argv[1]) / 'run.log', lambda line: print(line, flush=True))")
    parent = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(300):
        if not _running(child):
            break
        time.sleep(0.01)
    assert not _running(child), "the trainer outlived the tradelab process that launched it"


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
