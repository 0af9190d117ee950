"""The market lock between real CLI processes: two Stage 2 exports at once, a Stage 2 export against a running loop,
and a lock left by a loop killed with SIGKILL, taken over by the next writer.

The first process is frozen (SIGSTOP) as soon as its owner file shows it holds the lock, so the second always meets
it there, however fast the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stage2_factory import fake_stage1, mixed_records, write_experience

from tradelab.fileio import sha256_file
from tradelab.paths import Workspace
from tradelab.runlock import lock_state, owner_path, read_owner

REPO = Path(__file__).resolve().parents[2]
EXPORT = ["stage2", "--market", "NQ", "--dataset-only", "--engine", "local"]


def _start(root: Path, argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, str(REPO / "main.py"), "--root", str(root), *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _run(root: Path, argv: list[str]) -> subprocess.CompletedProcess:
    proc = _start(root, argv)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _frozen_holder(root: Path, argv: list[str]) -> subprocess.Popen:
    """Start ``argv`` and freeze it the moment it holds NQ's lock."""
    proc = _start(root, argv)
    deadline = time.monotonic() + 240
    while not owner_path(root, "NQ").is_file():
        assert proc.poll() is None, f"it ended before taking the lock: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signal.SIGSTOP)
    return proc


def _one_busy_line(result: subprocess.CompletedProcess, holder: subprocess.Popen, stage: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: NQ is busy:") and f"{stage} (pid {holder.pid} " in lines[0], lines[0]
    assert "main.py" in lines[0] and "Traceback" not in result.stderr


@pytest.fixture()
def export_root(tmp_path: Path) -> Path:
    fake_stage1(tmp_path)
    write_experience(tmp_path, mixed_records(3000))
    return tmp_path


@pytest.mark.slow
def test_two_concurrent_exports_one_waits_out(export_root: Path) -> None:
    first = _frozen_holder(export_root, EXPORT)
    try:
        second = _run(export_root, EXPORT)
        _one_busy_line(second, first, "stage2 export")
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    # The export that ran is whole and is what the manifest names; the refused one wrote nothing.
    ws = Workspace.at(export_root)
    dataset = json.loads(ws.manifest_path("NQ").read_text())["stage2"]["dataset"]
    for split in ("train", "val"):
        assert sha256_file(ws.resolve(dataset["paths"][split])) == dataset["sha256s"][split]
    assert lock_state(export_root, "NQ").state == "free"
    assert _run(export_root, EXPORT).returncode == 0


@pytest.mark.slow
def test_stage2_against_a_running_loop_and_the_lock_a_killed_loop_leaves(
        export_root: Path, nq_workspace: Path) -> None:
    import shutil

    shutil.copytree(Workspace.at(nq_workspace).data_dir("NQ"), Workspace.at(export_root).data_dir("NQ"))
    loop = _frozen_holder(export_root, ["loop", "--market", "NQ", "--iterations", "1", "--test"])
    owner = read_owner(export_root, "NQ")
    assert owner is not None and owner.stage == "loop" and owner.pid == loop.pid
    try:
        _one_busy_line(_run(export_root, EXPORT), loop, "loop")
        status = _run(export_root, ["status", "--market", "NQ"])  # a reader: never blocked
        assert status.returncode == 0 and f"held by loop: pid {loop.pid}" in status.stdout, status.stdout
    finally:
        loop.send_signal(signal.SIGKILL)
        loop.wait()
    # Killed while holding it: the lock is free again (the kernel let go), its owner file reads stale...
    assert lock_state(export_root, "NQ").state == "stale"
    status = _run(export_root, ["status", "--market", "NQ"])
    assert status.returncode == 0 and "whose process is gone" in status.stdout, status.stdout
    # ...and the next writer takes it over.
    taken = _run(export_root, EXPORT)
    assert taken.returncode == 0 and taken.stderr == "", taken.stderr
    assert lock_state(export_root, "NQ").state == "free"
