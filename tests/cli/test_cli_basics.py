"""CLI boundary: exit codes, one-line errors, no TTY, cheap imports, status rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tradelab import manifest
from tradelab.cli.app import main

HEAVY = ("torch", "transformers", "peft", "stable_baselines3", "sb3_contrib", "verl", "gymnasium", "ray")


def test_menu_import_pulls_no_heavy_modules() -> None:
    code = (
        "import sys, tradelab.cli.app, tradelab.cli.menu, tradelab.cli.commands, tradelab.stages;"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bad_argument_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "stage1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--market" in err[0]


def test_bad_market_name_exits_2_without_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "status", "--market", "../etc"]) == 2
    err = capsys.readouterr().err
    assert "invalid market name" in err and "Traceback" not in err


def test_menu_without_tty_is_a_clear_user_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "main.py", "--root", str(tmp_path)], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert "not a TTY" in proc.stderr and "--test" in proc.stderr and "Traceback" not in proc.stderr


def test_status_json_on_a_prepared_workspace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "data" / "ES").mkdir(parents=True)
    (tmp_path / "data" / "ES" / "bars_1m.parquet").write_bytes(b"stand-in bars file")
    manifest.merge_stage1(tmp_path, "NQ", {"status": "completed", "model_checkpoint": str(tmp_path / "missing.zip")})
    manifest.append_run(tmp_path, "NQ", manifest.RunRecord(engine="verl", status="failed", return_code=3,
                                                           log_file="x.log"))
    assert main(["--root", str(tmp_path), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    markets = {m["market"]: m for m in status["markets"]}
    assert set(markets) == {"ES", "NQ"}
    assert markets["NQ"]["stages"]["stage1"] == "completed"
    assert markets["ES"]["stages"]["data"] == "ready" and markets["NQ"]["stages"]["data"] == "missing"
    ppo = next(a for a in markets["NQ"]["artifacts"] if a["name"] == "ppo_model")
    assert ppo["exists"] is False
    assert markets["NQ"]["runs"] == [
        {"engine": "verl", "status": "failed", "return_code": 3, "log_file": "x.log", "started_at": None,
         "checkpoint": None}
    ]


def test_status_says_when_a_market_has_no_stage1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest.set_section(tmp_path, "NQ", "data", {"rows": 10})  # a manifest, but no stage1 section
    assert main(["--root", str(tmp_path), "status", "--market", "NQ", "--json"]) == 0
    nq = json.loads(capsys.readouterr().out)["markets"][0]
    assert nq["stages"]["stage1"] == "not run: `python main.py stage1 --market NQ --test` (or a full run) trains it"
    assert {a["name"] for a in nq["artifacts"]} == {"bars", "experience", "stage2_train", "stage2_val", "stage2_output"}
    assert main(["--root", str(tmp_path), "status", "--market", "NQ"]) == 0
    assert "not run" in capsys.readouterr().out
    from tradelab import stages

    report = stages.preflight(tmp_path, "NQ", engine="verl", dataset_only=True)
    base = next(c for c in report["checks"] if c["name"] == "base_model")
    assert base["status"] == "fail" and "has no stage1 section" in base["message"]


def test_status_tables_render(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    manifest.merge_stage1(tmp_path, "NQ", {"status": "completed"})
    assert main(["--root", str(tmp_path), "status"]) == 0
    out = capsys.readouterr().out
    assert "NQ: stages" in out and "completed" in out and "NQ: artifacts" in out


def test_errors_are_logged_to_app_log(tmp_path: Path) -> None:
    main(["--root", str(tmp_path), "status", "--market", "bad name"])
    assert "invalid market name" in (tmp_path / "logs" / "app.log").read_text()


def test_stage1_adapter_option_points_the_advisor_at_the_stage2_adapter(tmp_path: Path) -> None:
    from tradelab.config import load_config
    from tradelab.errors import StageNotReady
    from tradelab.paths import Workspace
    from tradelab.stages import with_advisor_adapter

    cfg = load_config()
    with pytest.raises(StageNotReady, match="--engine local"):
        with_advisor_adapter(cfg, tmp_path, "NQ", "soft_grpo")
    adapter = Workspace.at(tmp_path).soft_grpo_adapter_dir("NQ")
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    closed = with_advisor_adapter(cfg, tmp_path, "NQ", "soft_grpo")
    assert closed.llm.adapter_path == str(adapter)
    assert with_advisor_adapter(cfg, tmp_path, "NQ", None) is cfg


def test_stage1_cli_reports_a_missing_adapter_as_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--root", str(tmp_path), "stage1", "--market", "NQ", "--adapter", str(tmp_path / "nope")]) == 2
    assert "adapter_config.json missing" in capsys.readouterr().err
