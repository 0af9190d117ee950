"""The CLI boundary: numeric flags checked with the config's own ranges, and nothing but one line on screen for
environment failures (a --root that is a file, an unwritable log, OSError, MemoryError, a closed pipe)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from tradelab.cli import parser as cli_parser
from tradelab.cli.app import main
from tradelab.config.evaluation_schema import EvaluationConfig
from tradelab.config.schema import AppConfig


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


def test_numeric_flag_ranges_come_from_the_config_schema() -> None:
    days_high = next(m.le for m in AppConfig.model_fields["synthetic_days"].metadata if getattr(m, "le", None))
    assert cli_parser.days_int(str(days_high)) == days_high
    with pytest.raises(argparse.ArgumentTypeError, match=f"from 5 to {days_high}"):
        cli_parser.days_int(str(days_high + 1))
    seeds_high = next(m.le for m in EvaluationConfig.model_fields["seeds"].metadata if getattr(m, "le", None))
    with pytest.raises(argparse.ArgumentTypeError, match=f"from 1 to {seeds_high}"):
        cli_parser.seeds_int("0")
    assert cli_parser.walk_forward_windows_int("2") == 2
    with pytest.raises(argparse.ArgumentTypeError):
        cli_parser.walk_forward_windows_int("1")
    assert cli_parser.positive_int("1_000") == 1000
    for bad in ("0", "-3", "2.5", "ten", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_parser.positive_int(bad)


@pytest.mark.parametrize("argv, fragment", [
    (["stage1", "--market", "NQ", "--timesteps", "-5"], "-5 is out of range"),
    (["stage1", "--market", "NQ", "--timesteps", "0"], "0 is out of range"),
    (["data", "generate", "--market", "NQ", "--days", "10000000"], "from 5 to 2000"),
    (["evaluate", "--market", "NQ", "--episodes", "0"], "--episodes"),
    (["evaluate", "--market", "NQ", "--seeds", "101"], "from 1 to 100"),
])
def test_bad_numbers_stop_before_anything_is_written(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     argv: list[str], fragment: str) -> None:
    assert main(["--root", str(tmp_path), *argv]) == 2
    assert fragment in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_root_that_is_a_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "root.txt"
    root.write_text("x")
    assert main(["--root", str(root), "status"]) == 2
    assert "is a file, not a folder" in _one_error_line(capsys)
    assert root.read_text() == "x"


def test_status_works_when_the_log_cannot_be_written(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the log folder belongs")
    assert main(["--root", str(tmp_path), "status"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("exc, code, fragment", [
    (OSError(28, "No space left on device", "/ws/models/x.zip"), 2, "/ws/models/x.zip: No space left on device"),
    (PermissionError(13, "Permission denied", "/ws/logs"), 2, "Permission denied"),
    (MemoryError(), 1, "out of memory"),
    (RuntimeError("first line\nsecond line"), 1, "first line second line"),
])
def test_environment_failures_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path, exc: BaseException, code: int, fragment: str) -> None:
    from tradelab import stages

    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(stages, "status", boom)
    assert main(["--root", str(tmp_path), "status"]) == code
    assert fragment in _one_error_line(capsys)
    logging.getLogger().handlers[-1].flush()
    assert "Traceback" in (tmp_path / "logs" / "app.log").read_text(), "the traceback goes to the log"


def test_config_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import shutil

    from tradelab.config import DEFAULT_CONFIG_DIR

    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    ppo = config / "ppo.yaml"
    ppo.write_text(ppo.read_text().replace("learning_rate:", "learning_rate: .inf #", 1)
                   .replace("gamma:", "gama:", 1))
    assert main(["--root", str(tmp_path), "stage2", "--market", "NQ", "--dataset-only"]) == 2
    line = _one_error_line(capsys)
    assert "learning_rate" in line and "finite" in line and "did you mean gamma" in line


@pytest.mark.parametrize("argv, fragments", [
    (["--profile", "smok", "status"], ["'smok'", "did you mean smoke", "learn-tiny", "pod"]),
    (["stage1", "--market", "NQ", "--profile", "nope"], ["'nope'", "available: ", "smoke"]),
    (["--profile", "pod", "stage2", "--market", "NQ", "--test"], ["--test names the smoke profile", "'pod'"]),
])
def test_an_unknown_or_conflicting_profile_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path, argv: list[str],
                                                                  fragments: list[str]) -> None:
    assert main(["--root", str(tmp_path / "ws"), *argv]) == 2
    line = _one_error_line(capsys)
    assert all(fragment in line for fragment in fragments), line
    assert not (tmp_path / "ws" / "data").exists() and not (tmp_path / "ws" / "models").exists()


def test_a_workspace_profile_with_a_bad_key_is_one_line_naming_the_file(capsys: pytest.CaptureFixture[str],
                                                                        tmp_path: Path) -> None:
    import shutil

    from tradelab.config import DEFAULT_CONFIG_DIR

    shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "config")
    bad = tmp_path / "config" / "profiles" / "mine.yaml"
    bad.write_text("extends: smoke\napp:\n  synthetic_dayz: 10\n")
    assert main(["--root", str(tmp_path), "--profile", "mine", "data", "generate", "--market", "NQ"]) == 2
    line = _one_error_line(capsys)
    assert f"{bad}: app.synthetic_dayz" in line and "did you mean synthetic_days" in line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("argv", [
    ["--profile", "smoke", "data", "generate", "--market", "NQ"],
    ["data", "generate", "--market", "NQ", "--profile", "smoke"],
    ["--test", "data", "generate", "--market", "NQ"],
])
def test_the_profile_reaches_the_command_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path, argv: list[str]) -> None:
    import json

    from tradelab.config import load_config

    assert main(["--root", str(tmp_path), *argv]) == 0
    report = json.loads((tmp_path / "data" / "NQ" / "data_report.json").read_text())
    assert report["origin"]["profile"] == "smoke"
    days = load_config(profile="smoke").app.synthetic_days
    assert days != load_config().app.synthetic_days and report["source"]["days"] == days
