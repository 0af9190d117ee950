"""The menu driven through prompt_toolkit pipe input, as a user would press keys."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console
from stage2_factory import fake_stage1, mixed_records, write_experience

from tradelab import manifest
from tradelab.cli.menu import run_menu
from tradelab.config import available_profiles, load_config
from tradelab.paths import Workspace

DOWN, ENTER = "\x1b[B", "\r"


@pytest.fixture()
def keys() -> Iterator:
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        yield pipe


def _drive(keys, root: Path, presses: list[str]) -> str:
    for press in presses:
        keys.send_text(press)
    buffer = io.StringIO()
    code = run_menu(root, None, Console(file=buffer, width=200, force_terminal=False))
    assert code == 0
    return buffer.getvalue()


def _select(index: int) -> str:
    return DOWN * index + ENTER


def test_training_stage2_dataset_only(keys, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_experience(root, mixed_records(40))
    fake_stage1(root)
    presses = [
        _select(1),  # Main: Training
        _select(1),  # Phase 3 Stage 2: SofT-GRPO Reasoning
        _select(0),  # Market: NQ (the only one with a completed Stage 1)
        _select(0),  # Run profile: the session's (pod)
        _select(1),  # Dataset only
        _select(0),  # Engine: verl
        _select(7),  # Main: Exit
    ]
    out = _drive(keys, root, presses)
    data_dir = Workspace.at(root).soft_grpo_data_dir("NQ")
    assert (data_dir / "stage2_train.parquet").exists() and (data_dir / "stage2_val.parquet").exists()
    assert "NQ (Dataset only): Stage 2" in out and "stage2_train.parquet" in out
    dataset = manifest.load_manifest(root, "NQ")["stage2"]["dataset"]
    assert sum(dataset["counts"].values()) >= 1
    assert manifest.load_manifest(root, "NQ")["stage2"]["runs"] == []  # dataset only launches nothing
    assert dataset["profile"] == "pod" and "Run profile: pod" in out


def test_the_profile_chosen_in_the_menu_resolves_the_config(keys, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_experience(root, mixed_records(100))
    fake_stage1(root)
    choices = ["pod", *(name for name in available_profiles() if name != "pod")]
    presses = [_select(1), _select(1), _select(0),
               _select(choices.index("smoke")),  # Run profile: smoke
               _select(1), _select(0), _select(7)]
    out = _drive(keys, root, presses)
    dataset = manifest.load_manifest(root, "NQ")["stage2"]["dataset"]
    assert dataset["profile"] == "smoke" and "Run profile: smoke" in out
    assert dataset["counts"]["kept"] == load_config(profile="smoke").soft_grpo.dataset.max_samples < 100


def test_stage2_without_completed_stage1_shows_the_fix(keys, tmp_path: Path) -> None:
    out = _drive(keys, tmp_path, [_select(1), _select(1), _select(7)])
    assert "No market has a completed Stage 1" in out and "stage1 --market NQ --test" in out


def test_status_entry_renders_tables(keys, tmp_path: Path) -> None:
    manifest.merge_stage1(tmp_path, "ES", {"status": "completed"})
    out = _drive(keys, tmp_path, [_select(4), _select(7)])
    assert "ES: stages" in out and "completed" in out


def test_back_returns_to_the_main_menu(keys, tmp_path: Path) -> None:
    out = _drive(keys, tmp_path, [_select(0), _select(3), _select(7)])  # Data -> Back -> Exit
    assert "Error" not in out


def test_learning_loop_entry_without_data_shows_the_fix(keys, tmp_path: Path) -> None:
    out = _drive(keys, tmp_path, [_select(3), _select(7)])  # Learning loop -> Exit
    assert "No market data yet" in out and "data generate" in out


def test_probe_entry_without_a_completed_stage1_shows_the_fix(keys, tmp_path: Path) -> None:
    out = _drive(keys, tmp_path, [_select(6), _select(7)])  # Probe an advisor -> Exit
    assert "No market has a completed Stage 1 to probe" in out
