"""The manifest is not trusted blindly: shapes, encodings and schema versions are checked; older ones migrate; a
killed Stage 1 is detected as stale (the market lock itself: tests/test_runlock.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tradelab import manifest
from tradelab.errors import DataError, StageNotReady, WorkspaceError
from tradelab.fileio import sha256_file
from tradelab.paths import Workspace
from tradelab.runlock import market_lock, run_liveness


def _write(root: Path, payload: bytes | str | dict) -> Path:
    path = Workspace.at(root).manifest_path("NQ")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    path.write_bytes(payload.encode() if isinstance(payload, str) else payload)
    return path


def _valid(**changes: object) -> dict:
    return {**manifest.new_manifest("NQ"), **changes}


@pytest.mark.parametrize("changes, fragment", [
    ({"stage2": None}, "stage2 is None"),
    ({"stage1": "done"}, "stage1 is 'done'"),
    ({"data": [1]}, "data is [1]"),
    ({"evaluation": {"a": 1}}, "evaluation is {'a': 1}"),
    ({"stage1": {"status": "finished"}}, "stage1.status is 'finished'"),
    ({"stage1": {"status": "completed", "lora_adapter_path": 5}}, "stage1.lora_adapter_path is 5"),
    ({"stage1": {"status": "completed", "base_model": "tiny"}}, "stage1.base_model is 'tiny'"),
    ({"stage1": {"status": "completed", "total_timesteps": "512"}}, "stage1.total_timesteps is '512'"),
    ({"stage2": {"dataset": "x", "preflight": None, "runs": []}}, "stage2.dataset is 'x'"),
    ({"stage2": {"dataset": None, "preflight": None, "runs": [1]}}, "stage2.runs.0 is 1"),
    ({"schema_version": "2"}, "schema_version is '2'"),
    ({"data": {"holdout_start": 5}}, "data.holdout_start is 5"),
    ({"stage2": {"dataset": {"counts": {}, "paths": None, "sha256s": {}}, "preflight": None, "runs": []}},
     "stage2.dataset.paths is None"),
])
def test_a_wrongly_shaped_manifest_is_kept_backed_up_and_named(tmp_path: Path, changes: dict, fragment: str) -> None:
    path = _write(tmp_path, _valid(**changes))
    before = sha256_file(path)
    with pytest.raises(DataError) as info:
        manifest.merge_stage1(tmp_path, "NQ", {"status": "completed"})
    assert fragment in str(info.value) and str(path) in str(info.value) and ".bak" in str(info.value)
    assert "\n" not in str(info.value)
    assert sha256_file(path) == before == sha256_file(path.with_name(path.name + ".bak"))


def test_invalid_utf8_is_a_parse_error_not_a_crash(tmp_path: Path) -> None:
    path = _write(tmp_path, b'{"schema_version": 2, "market": "NQ\xff"}')
    with pytest.raises(DataError, match="not a valid manifest.*utf-8"):
        manifest.load_manifest(tmp_path, "NQ")
    assert path.with_name(path.name + ".bak").read_bytes() == path.read_bytes()


def test_a_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = _write(tmp_path, _valid(schema_version=999))
    before = sha256_file(path)
    with pytest.raises(DataError, match="schema_version 999 was written by a newer tradelab"):
        manifest.merge_stage1(tmp_path, "NQ", {"status": "completed"})
    assert sha256_file(path) == before


def test_a_version_1_manifest_migrates_to_relative_paths(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path)
    lora = ws.stage1_lora_dir("NQ")
    dataset = {"counts": {"train": 1}, "sha256s": {"train": "0" * 64},
               "paths": {"train": str(ws.root / "data/soft_grpo/NQ/t.parquet")}}
    old = _valid(schema_version=1, stage2={"dataset": dataset, "runs": []},
                 data={"bars_path": str(ws.bars_path("NQ"))},
                 stage1={"status": "completed", "lora_adapter_path": str(lora),
                         "model_checkpoint": str(ws.ppo_dir("NQ") / "final.zip"),
                         "base_model": {"name": "x", "local_path": "/opt/models/llama", "smoke_test_model": False}})
    _write(tmp_path, old)
    loaded = manifest.load_manifest(tmp_path, "NQ")
    assert loaded["schema_version"] == manifest.MANIFEST_SCHEMA_VERSION
    assert loaded["stage1"]["lora_adapter_path"] == "models/phase3_hybrid/NQ/stage1_lora"
    assert loaded["stage1"]["model_checkpoint"] == "models/phase3_hybrid/NQ/ppo/final.zip"
    assert loaded["stage1"]["base_model"]["local_path"] == "/opt/models/llama", "outside the root stays absolute"
    assert loaded["data"]["bars_path"] == "data/NQ/bars_1m.parquet"
    assert loaded["stage2"]["dataset"]["paths"]["train"] == "data/soft_grpo/NQ/t.parquet"
    assert loaded["stage2"]["preflight"] is None
    assert ws.resolve(loaded["stage1"]["lora_adapter_path"]) == lora
    manifest.merge_stage1(tmp_path, "NQ", {"seed": 1})
    saved = json.loads(ws.manifest_path("NQ").read_text())
    assert saved["schema_version"] == manifest.MANIFEST_SCHEMA_VERSION and saved["stage1"]["seed"] == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _completed() -> dict:
    return {"status": "completed", "completed_at": "2026-01-01T00:00:00Z", "total_timesteps": 512,
            "model_checkpoint": "models/phase3_hybrid/NQ/ppo/final.zip"}


def test_a_killed_run_is_stale_and_the_last_completed_run_serves(tmp_path: Path) -> None:
    manifest.merge_stage1(tmp_path, "NQ", {"status": "running", "pid": _dead_pid(), "host": socket.gethostname(),
                                           "started_at": "2026-01-02T00:00:00Z", "last_completed": _completed()})
    section = manifest.load_manifest(tmp_path, "NQ")["stage1"]
    assert run_liveness(tmp_path, "NQ", section) == "stale"
    served = manifest.require_stage1(tmp_path, "NQ")
    assert served["stage1"]["status"] == "completed" and served["stage1"]["total_timesteps"] == 512


def test_a_killed_first_run_says_how_to_continue(tmp_path: Path) -> None:
    manifest.merge_stage1(tmp_path, "NQ", {"status": "running", "pid": _dead_pid(), "host": socket.gethostname()})
    with pytest.raises(StageNotReady, match="process .* is gone.*--resume"):
        manifest.require_stage1(tmp_path, "NQ")


def test_a_live_run_is_waited_for(tmp_path: Path) -> None:
    with market_lock(tmp_path, "NQ", "stage1") as me:
        manifest.merge_stage1(tmp_path, "NQ", {"status": "running", "pid": os.getpid(), "host": socket.gethostname(),
                                               "lock_token": me.token, "last_completed": _completed()})
        with pytest.raises(StageNotReady, match="is running .*wait for it"):
            manifest.require_stage1(tmp_path, "NQ")
    assert manifest.require_stage1(tmp_path, "NQ")["stage1"]["status"] == "completed"


def test_a_run_on_another_host_is_not_guessed_about(tmp_path: Path) -> None:
    manifest.merge_stage1(tmp_path, "NQ", {"status": "running", "pid": 1, "host": "gpu-pod-7"})
    section = manifest.load_manifest(tmp_path, "NQ")["stage1"]
    assert run_liveness(tmp_path, "NQ", section) == "unknown"
    with pytest.raises(StageNotReady, match="gpu-pod-7"):
        manifest.require_stage1(tmp_path, "NQ")


def test_interrupted_and_failed_runs_fall_back_to_the_last_completed(tmp_path: Path) -> None:
    for status in ("interrupted", "failed"):
        manifest.merge_stage1(tmp_path, "NQ", {"status": status, "last_completed": _completed()})
        assert manifest.require_stage1(tmp_path, "NQ")["stage1"]["status"] == "completed"


def test_status_marks_a_killed_run_interrupted(tmp_path: Path) -> None:
    from tradelab.stages import status

    pid = _dead_pid()
    manifest.merge_stage1(tmp_path, "NQ", {"status": "running", "pid": pid, "host": socket.gethostname()})
    stage1 = status(tmp_path, "NQ")["markets"][0]["stages"]["stage1"]
    assert stage1.startswith("interrupted: its process (pid") and f"pid {pid} on host" in stage1
    assert manifest.load_manifest(tmp_path, "NQ")["stage1"]["status"] == "interrupted"
