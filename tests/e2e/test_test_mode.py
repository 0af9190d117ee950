"""`python main.py --test`: the whole pipeline end to end in a temp root, as a user runs it (no TTY)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tradelab.stages import TEST_PIPELINE_STAGES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_test_mode_runs_the_whole_pipeline(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--root", str(tmp_path), "--test"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    log = (tmp_path / "logs" / "app.log").read_text() if (tmp_path / "logs" / "app.log").exists() else ""
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}\nlog:\n{log[-4000:]}"
    for stage in TEST_PIPELINE_STAGES:
        assert stage in proc.stdout

    manifest = json.loads((tmp_path / "models/phase3_hybrid/NQ/phase3_stage_manifest.json").read_text())
    assert manifest["stage1"]["status"] == "completed"
    assert manifest["stage1"]["experience_with_outcome"] >= 100
    assert manifest["stage2"]["dataset"]["counts"]["train"] > 0
    assert manifest["stage2"]["preflight"] is not None
    local_runs = [r for r in manifest["stage2"]["runs"] if r["engine"] == "local"]
    assert local_runs and local_runs[-1]["status"] == "completed" and local_runs[-1]["return_code"] == 0
    output = local_runs[-1]["output"]
    assert output["kind"] == "adapter" and (tmp_path / output["path"] / "adapter_config.json").exists()
    assert manifest["evaluation"] and Path(manifest["evaluation"][-1]["report_dir"], "report.json").exists()
    # --test is the smoke profile: every record names it next to its config hash, and so does the screen.
    records = [manifest["stage1"], manifest["stage2"]["dataset"], local_runs[-1], manifest["evaluation"][-1]]
    assert all(r["profile"] == "smoke" for r in records) and "Run profile: smoke (config hash" in proc.stdout
    assert all(r["config_hash"] for r in (manifest["stage1"], local_runs[-1], manifest["evaluation"][-1]))

    # The experience file is append-only: a second Stage 1 in the same root appends, never truncates.
    experience = tmp_path / "data/soft_grpo/NQ/stage1_experience.jsonl"
    assert experience.stat().st_size > 0
    assert list(tmp_path.glob("tensorboard_logs/phase3/stage1/NQ/**/events.out.tfevents.*"))
