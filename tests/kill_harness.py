"""Killing a real ``python main.py loop`` from outside, on what it is observed doing (tests/e2e/test_kill_anywhere.py).

The loop runs as a subprocess; a reader thread collects its event lines (``iteration 1: stage1``, ``writing the loop
report ...``). A kill point waits for a condition on those lines and on the workspace (a file appearing, the
manifest saying Stage 1 completed), then SIGKILLs the process after a seeded delay, or, for windows of a few
milliseconds (the export, the report), freezes it with SIGSTOP and lets it run in 2 ms slices until the condition
holds while it is frozen, and kills it there. Nothing in the library knows it is being killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.paths import Workspace

REPO = Path(__file__).resolve().parents[1]
MAIN = REPO / "main.py"


class LoopProcess:
    """``python main.py --root ROOT <args>`` with its output lines collected as they come."""

    def __init__(self, root: Path, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONPATH": str(REPO / "src")}
        self.root = root
        self.proc = subprocess.Popen([sys.executable, str(MAIN), "--root", str(root), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n").lstrip("→ ").strip())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, number: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def started(self, number: int, stage: str) -> bool:
        """Whether the loop has announced iteration ``number``'s ``stage`` (a first run or a redo)."""
        head = f"iteration {number}: {stage}"
        return any(line == head or line.startswith(head + " (redone") for line in self.lines)


def manifest(root: Path) -> dict[str, Any]:
    """The market's manifest as it is on disk now ({} when missing or mid-replace)."""
    try:
        return json.loads(Workspace.at(root).manifest_path("NQ").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def loop_activity(root: Path) -> str | None:
    loop = manifest(root).get("loop") or {}
    return loop.get("activity")


@dataclass
class KillPoint:
    """Where to kill: a condition, then a seeded delay (``step``: freeze-and-slice instead of a delay).

    Attributes:
        name: What the point aims at.
        ready: ``ready(process, state)`` -> True once the kill should happen (``state`` is a dict it may keep
            notes in across calls).
        delay_s: ``(low, high)`` of the seeded uniform delay after ``ready``.
        step: Kill only while frozen with ``ready`` still true (for windows of a few milliseconds).
    """

    name: str
    ready: Callable[[LoopProcess, dict[str, Any]], bool]
    delay_s: tuple[float, float] = (0.0, 0.0)
    step: bool = False


@dataclass
class KillOutcome:
    """What one kill hit, read from the workspace right after it."""

    name: str
    delay_s: float
    activity: str | None
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def run_until_killed(root: Path, args: list[str], point: KillPoint, delay_s: float, *,
                     timeout_s: float = 300.0) -> KillOutcome:
    """Start the loop, kill it at ``point``; raise when it ends (or times out) before getting there."""
    started = time.monotonic()
    proc = LoopProcess(root, args)
    notes: dict[str, Any] = {}
    try:
        while not point.ready(proc, notes):
            if not proc.alive():
                raise AssertionError(f"{point.name}: the loop ended (rc {proc.proc.returncode}) before the kill "
                                     f"point; its output:\n" + "\n".join(proc.lines[-30:]))
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{point.name}: not reached in {timeout_s:.0f} s:\n" + "\n".join(proc.lines[-30:]))
            time.sleep(0.003)
        if point.step:
            _step_until(proc, lambda: point.ready(proc, notes))
        else:
            time.sleep(delay_s)
    finally:
        proc.kill()
    return KillOutcome(point.name, delay_s, loop_activity(root), notes, time.monotonic() - started)


def _step_until(proc: LoopProcess, condition: Callable[[], bool], slice_s: float = 0.002) -> None:
    """Freeze the process and let it run in short slices until ``condition`` holds while it is frozen."""
    proc.signal(signal.SIGSTOP)
    for _ in range(5000):
        if condition():
            return
        proc.signal(signal.SIGCONT)
        time.sleep(slice_s)
        proc.signal(signal.SIGSTOP)
    raise AssertionError("the stepped condition never held while the process was frozen")


def run_to_end(root: Path, args: list[str], timeout_s: float = 600.0) -> tuple[int, list[str]]:
    """Run the loop to its end; ``(exit code, output lines)``."""
    proc = LoopProcess(root, args)
    try:
        code = proc.wait(timeout_s)
    finally:
        proc.kill()
    return code, proc.lines


# ------------------------------------------------------------------------------------------------- conditions
def started(number: int, stage: str) -> Callable[[LoopProcess, dict[str, Any]], bool]:
    return lambda proc, notes: proc.started(number, stage)


def experience_grew(number: int) -> Callable[[LoopProcess, dict[str, Any]], bool]:
    """Iteration ``number``'s Stage 1 has appended experience records."""

    def ready(proc: LoopProcess, notes: dict[str, Any]) -> bool:
        if not proc.started(number, "stage1"):
            return False
        path = Workspace.at(proc.root).experience_path("NQ")
        size = path.stat().st_size if path.is_file() else 0
        notes.setdefault("experience_bytes_at_start", size)
        notes["experience_bytes"] = size
        return size > notes["experience_bytes_at_start"]

    return ready


def stage1_recorded(number: int) -> Callable[[LoopProcess, dict[str, Any]], bool]:
    """Iteration ``number``'s Stage 1 is recorded completed in the manifest, and the loop has not moved on."""

    def ready(proc: LoopProcess, notes: dict[str, Any]) -> bool:
        if not proc.started(number, "stage1") or proc.started(number, "stage2_dataset"):
            return False
        stage1 = manifest(proc.root).get("stage1") or {}
        done = stage1.get("status") == "completed" and str(stage1.get("run_id")).endswith(f"-i{number}")
        if done:
            notes["stage1_status"] = "completed"
        return done

    return ready


def export_running(number: int) -> Callable[[LoopProcess, dict[str, Any]], bool]:
    """Iteration ``number``'s export is writing: its private spill folder exists."""

    def ready(proc: LoopProcess, notes: dict[str, Any]) -> bool:
        if not proc.started(number, "stage2_dataset"):
            return False
        spills = list(Workspace.at(proc.root).soft_grpo_data_dir("NQ").glob(".export-*"))
        notes["spill_folders"] = len(spills)
        return bool(spills)

    return ready


def local_run(number: int, *, checkpointed: bool) -> Callable[[LoopProcess, dict[str, Any]], bool]:
    """Iteration ``number``'s local engine has created its run folder (and, with ``checkpointed``, saved a
    checkpoint in it)."""

    def ready(proc: LoopProcess, notes: dict[str, Any]) -> bool:
        folders = set(Workspace.at(proc.root).soft_grpo_output_dir("NQ").glob("local_*"))
        if not proc.started(number, "stage2_engine"):
            notes["before"] = folders
            return False
        new = sorted(folders - notes.get("before", set()))
        if not new:
            return False
        saved = sorted(new[-1].glob("checkpoints/step_*/trainer_state.pt"))
        notes["run_folder"], notes["checkpoints"] = new[-1].name, len(saved)
        return bool(saved) if checkpointed else (new[-1] / "run_log.jsonl").is_file()

    return ready


def writing_report(number: int | None) -> Callable[[LoopProcess, dict[str, Any]], bool]:
    """The loop is writing its report (after iteration ``number``, or the final one)."""
    line = "writing the loop report" + (f" after iteration {number}" if number is not None else "")
    want = "report" if number is None else f"iteration {number} report"

    def ready(proc: LoopProcess, notes: dict[str, Any]) -> bool:
        return line in proc.lines and loop_activity(proc.root) == want

    return ready
