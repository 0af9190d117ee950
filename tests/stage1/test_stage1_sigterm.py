"""SIGTERM (a pod being stopped) takes the same save-and-record path as Ctrl-C, through the real CLI process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradelab.manifest import load_manifest
from tradelab.paths import Workspace

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_flushes_and_records_interrupted(make_root) -> None:
    root = make_root()
    ws = Workspace.at(root)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), "--root", str(root), "stage1", "--market", "NQ", "--test",
         "--timesteps", "1000000"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    # Wait until training is under way: the manifest says running and the first batch of records was flushed.
    while time.monotonic() < deadline and proc.poll() is None:
        manifest = load_manifest(root, "NQ") if ws.manifest_path("NQ").exists() else None
        running = ((manifest or {}).get("stage1") or {}).get("status") == "running"
        if running and ws.experience_path("NQ").exists():
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err

    stage1 = load_manifest(root, "NQ")["stage1"]
    assert stage1["status"] == "interrupted"
    lines = ws.experience_path("NQ").read_text().splitlines()
    assert lines and stage1["experience_samples"] == len(lines)
    assert all(json.loads(line)["market"] == "NQ" for line in lines)
    assert list((ws.ppo_dir("NQ") / "checkpoints").glob("*.zip")), "a checkpoint is saved on SIGTERM"
    assert "interrupted" in err and "Traceback" not in err
    assert os.path.exists(ws.app_log())
