"""The Stage 2 runner: launch plans (argv, keys, env), dry-run, recorded failing / succeeding launches, dispatch."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stage2_factory import fake_soft_grpo_repo, fake_stage1, with_overrides

from tradelab.config import DEFAULT_CONFIG_DIR, config_hash, load_config
from tradelab.errors import ConfigError, PreflightError, StageFailed
from tradelab.grpo.engines import base
from tradelab.grpo.engines.soft_grpo import MERGE_MARKER, ensure_merged, merged_state
from tradelab.grpo.runner import build_plan, run_stage2
from tradelab.manifest import RunRecord, load_manifest
from tradelab.paths import Workspace

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _runs(root: Path) -> list[dict]:
    return load_manifest(root, "NQ")["stage2"]["runs"]


def test_verl_plan_uses_verl09_keys_and_the_adapter_rank(stage2_root: Path) -> None:
    fake_stage1(stage2_root, rank=16)
    plan = build_plan(stage2_root, "NQ", load_config(profile="smoke"), engine="verl",
                      extra_overrides=["trainer.total_epochs=3"])
    args = base.override_map(plan.overrides)
    ws = Workspace.at(stage2_root)
    assert plan.argv[:3] == [plan.python, "-m", "verl.trainer.main_ppo"] and plan.argv[3:] == plan.overrides
    assert args["reward.custom_reward_function.path"].endswith("tradelab/grpo/reward.py")
    assert args["reward.custom_reward_function.name"] == "compute_score"
    assert "custom_reward_function.path" not in args
    assert args["actor_rollout_ref.model.lora_rank"] == "16"
    assert args["actor_rollout_ref.model.lora_adapter_path"] == str(ws.stage1_lora_dir("NQ"))
    assert args["actor_rollout_ref.rollout.n"] == "2" and args["trainer.total_epochs"] == "3"
    assert len(plan.overrides) == len(args), "test overrides must replace, not duplicate, keys"
    assert not any("{" in item and "}" in item for item in plan.overrides)
    assert plan.env_overrides["TENSORBOARD_DIR"] == str(ws.soft_grpo_tensorboard_dir("NQ"))
    assert Path(plan.env_overrides["TENSORBOARD_DIR"]).is_absolute()
    assert args["trainer.default_local_dir"].startswith(str(ws.soft_grpo_output_dir("NQ")))
    assert plan.env_overrides["PYTHONPATH"].split(":")[0] == str(PROJECT_ROOT / "src")


def test_soft_grpo_plan_uses_the_fork_keys(stage2_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = fake_soft_grpo_repo(tmp_path / "repo")
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", str(repo))
    plan = build_plan(stage2_root, "NQ", load_config(), engine="soft-grpo")
    args = base.override_map(plan.overrides)
    assert args["custom_reward_function.name"] == "compute_score" and "reward.custom_reward_function.path" not in args
    assert args["reward_model.reward_manager"] == "naive"
    assert args["actor_rollout_ref.model.path"] == str(Workspace.at(stage2_root).stage1_merged_dir("NQ"))
    assert "actor_rollout_ref.model.lora_rank" not in args
    assert plan.env_overrides["PYTHONPATH"].split(":")[:2] == [str(repo / "verl-0.4.x"), str(PROJECT_ROOT / "src")]
    assert any("stage1_merged will be rebuilt" in note for note in plan.notes)
    script = with_overrides(engines__soft_grpo__mode="script", engines__soft_grpo__script="SofT-GRPO-deepscaler-8k.sh")
    plan = build_plan(stage2_root, "NQ", script, engine="soft-grpo")
    assert plan.argv[:2] == ["bash", str(repo / "SofT-GRPO-deepscaler-8k.sh")]


def test_unknown_placeholder_is_a_config_error(stage2_root: Path) -> None:
    config = with_overrides(engines__verl__args=["data.train_files={train_file}"])
    with pytest.raises(ConfigError, match=r"\{train_file\}"):
        build_plan(stage2_root, "NQ", config, engine="verl")


def test_dry_run_returns_the_command_and_launches_nothing(stage2_root: Path, standin_python: Path) -> None:
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    result = run_stage2(stage2_root, "NQ", config, engine="verl", dry_run=True)
    assert result.launch.command[0] == str(standin_python) and "-m" in result.launch.command
    assert "verl.trainer.main_ppo" in result.launch.command_line
    assert _runs(stage2_root) == [] and result.run is None
    assert not Workspace.at(stage2_root).soft_grpo_log_dir().exists()
    assert result.dataset.counts["train"] > 0


def test_launch_script_runs_the_same_command(stage2_root: Path, standin_python: Path) -> None:
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    result = run_stage2(stage2_root, "NQ", config, engine="verl", dry_run=True)
    script = Path(result.launch.launch_script)
    assert script == Workspace.at(stage2_root).soft_grpo_output_dir("NQ") / "launch.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "export TENSORBOARD_DIR=" in text and "\ncd " in text
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, check=False)
    n_overrides = len(result.launch.command) - 3
    assert done.returncode == 3 and f"stand-in engine verl.trainer.main_ppo: {n_overrides} overrides" in done.stdout


def test_cli_dry_run_prints_the_command_plainly(stage2_root: Path, standin_python: Path) -> None:
    config_dir = stage2_root / "config"
    config_dir.mkdir()
    for source in DEFAULT_CONFIG_DIR.glob("*.yaml"):
        (config_dir / source.name).write_text(source.read_text())
    stage2_yaml = config_dir / "phase3_soft_grpo.yaml"
    data = yaml.safe_load(stage2_yaml.read_text())
    data["runner"]["python"] = str(standin_python)
    data["preflight"].update(compose_config=False, check_artifacts=False)
    data["dataset"]["train_order"] = "sides_balanced"
    stage2_yaml.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "main.py"), "--root", str(stage2_root), "stage2", "--market", "NQ",
         "--engine", "verl", "--test", "--dry-run"],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    command = lines[lines.index("command:") + 1]
    argv = shlex.split(command.split(" && ", 1)[1])
    assert argv[argv.index("-m") + 1] == "verl.trainer.main_ppo" and len(command) > 80  # one unwrapped line
    assert any(a.startswith("data.train_files=") for a in argv) and argv[-1] == "data.shuffle=False"
    assert "train order" in done.stdout and "sides_balanced" in done.stdout


def test_failing_launch_is_recorded_with_log_and_code(stage2_root: Path, standin_python: Path) -> None:
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    lines: list[str] = []
    with pytest.raises(StageFailed, match="exited with code 3") as info:
        run_stage2(stage2_root, "NQ", config, engine="verl", on_line=lines.append)
    assert info.value.exit_code == 1
    (run,) = _runs(stage2_root)
    assert run["status"] == "failed" and run["return_code"] == 3 and run["engine"] == "verl"
    assert run["command"][0] == str(standin_python) and isinstance(run["command"], list)
    assert run["config_hash"] == config_hash(config) and run["finished_at"] >= run["started_at"]
    dataset = load_manifest(stage2_root, "NQ")["stage2"]["dataset"]
    assert run["dataset"]["sha256s"] == {k: dataset["sha256s"][k] for k in ("train", "val")}
    log_file = Path(run["log_file"])
    assert log_file.parent == Workspace.at(stage2_root).soft_grpo_log_dir() and log_file.name.startswith("NQ_")
    assert "stand-in engine" in log_file.read_text() and any("stand-in engine" in line for line in lines)
    assert run["env"]["TENSORBOARD_DIR"].endswith("tensorboard_logs/phase3/soft_grpo/NQ")


def test_successful_launch_exports_the_adapter(stage2_root: Path, standin_python: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_EXIT", "0")
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    result = run_stage2(stage2_root, "NQ", config, engine="verl")
    ws = Workspace.at(stage2_root)
    adapter = ws.soft_grpo_adapter_dir("NQ")
    assert ws.resolve(result.run.output.path) == adapter and (adapter / "adapter_config.json").is_file()
    (run,) = _runs(stage2_root)
    assert run["status"] == "completed" and run["return_code"] == 0 and run["output"]["kind"] == "adapter"
    assert run["output"]["path"] == ws.record(adapter) and run["output"]["base_model_path"] == "models/base/fake-base"
    assert result.run.record() == run
    assert "stand-in merger wrote" in Path(run["log_file"]).read_text()


def test_an_adapter_that_does_not_load_fails_the_run(stage2_root: Path, standin_python: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_EXIT", "0")
    monkeypatch.setenv("STANDIN_BAD_ADAPTER", "1")
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    with pytest.raises(StageFailed, match="adapter weights do not load"):
        run_stage2(stage2_root, "NQ", config, engine="verl")
    (run,) = _runs(stage2_root)
    assert run["status"] == "failed" and "output" not in run and "do not load" in run["output_note"]
    assert not Workspace.at(stage2_root).soft_grpo_adapter_dir("NQ").exists()


@pytest.mark.slow
def test_fork_run_is_complete_only_with_a_loadable_hf_model(tmp_path: Path, standin_python: Path,
                                                            tiny_advisor_dir: Path, warm_adapter_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from stage2_factory import mixed_records, write_experience

    from tradelab.grpo.engines.soft_grpo import hf_model_dir
    from tradelab.manifest import merge_stage1

    root = tmp_path / "ws"
    write_experience(root, mixed_records())
    merge_stage1(root, "NQ", {"status": "completed", "lora_adapter_path": str(warm_adapter_dir),
                              "base_model": {"name": "tiny", "local_path": str(tiny_advisor_dir),
                                             "smoke_test_model": True}})
    repo = fake_soft_grpo_repo(tmp_path / "SofT-GRPO-master-main")
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", str(repo))
    monkeypatch.setenv("STANDIN_VERL_VERSION", "0.4.0")
    monkeypatch.setenv("STANDIN_SOFT_SGLANG", "1")
    monkeypatch.setenv("STANDIN_EXIT", "0")
    monkeypatch.setenv("STANDIN_HF_MODEL", str(tiny_advisor_dir))
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    result = run_stage2(root, "NQ", config, engine="soft-grpo")
    ws = Workspace.at(root)
    target = hf_model_dir(ws, "NQ")
    assert ws.resolve(result.run.output.path) == target and (target / "model.safetensors").is_file()
    (run,) = _runs(root)
    assert run["status"] == "completed" and run["output"]["sha256"] and run["output"]["kind"] == "full_model"
    assert run["output"]["base_model_path"] is None and run["output"]["architectures"]
    # A fork run that leaves sharded files only (no huggingface/) is recorded as failed, with the fix named.
    monkeypatch.delenv("STANDIN_HF_MODEL")
    with pytest.raises(StageFailed, match="add hf_model to actor_rollout_ref.actor.checkpoint.contents"):
        run_stage2(root, "NQ", config, engine="soft-grpo")
    assert _runs(root)[-1]["status"] == "failed" and "output" not in _runs(root)[-1]


def test_preflight_failure_blocks_the_launch(stage2_root: Path, tmp_path: Path) -> None:
    config = with_overrides("smoke", runner__python=str(tmp_path / "missing-python"))
    with pytest.raises(PreflightError, match="launch_python"):
        run_stage2(stage2_root, "NQ", config, engine="verl")
    assert _runs(stage2_root) == []


def test_dataset_only_exports_and_reports_without_launching(stage2_root: Path, tmp_path: Path) -> None:
    config = with_overrides("smoke", runner__python=str(tmp_path / "missing-python"))
    result = run_stage2(stage2_root, "NQ", config, engine="verl", dataset_only=True)
    assert result.preflight["ok"] is False and result.launch is None and result.run is None
    assert Path(result.dataset.paths["train"]).is_file()


def test_local_engine_is_dispatched_in_process(stage2_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tradelab.grpo.local.train as local_trainer

    calls: list[dict] = []
    record = RunRecord(engine="local", status="completed")
    monkeypatch.setattr(local_trainer, "train_local",
                        lambda root, market, config, **kw: calls.append(kw) or {"run": record})
    result = run_stage2(stage2_root, "NQ", load_config(profile="smoke"), engine="local", mode="discrete")
    assert result.run is record and result.launch.command_line.startswith("tradelab.grpo.local.train.train_local(")
    assert calls == [{"mode": "discrete", "resume_from": None, "progress": None}]
    assert result.dataset.profile == "smoke"


def test_merged_model_is_rebuilt_only_when_stale(stage2_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tradelab.advisor.train as advisor_train

    merges: list[Path] = []

    def stand_in_merge(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
        merges.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True, exist_ok=True)  # like merge_adapter, which replaces out_dir
        (Path(out_dir) / "config.json").write_text("{}")
        return Path(out_dir)

    monkeypatch.setattr(advisor_train, "merge_adapter", stand_in_merge)
    ws = Workspace.at(stage2_root)
    inputs = base.stage1_inputs(ws.root, "NQ")
    merged = ws.stage1_merged_dir("NQ")
    assert merged_state(merged, inputs.adapter)[0] is False
    assert ensure_merged(inputs.base_model, inputs.adapter, merged)["rebuilt"] is True
    assert json.loads((merged / MERGE_MARKER).read_text())["adapter_sha256"]
    assert ensure_merged(inputs.base_model, inputs.adapter, merged)["rebuilt"] is False
    (inputs.adapter / "adapter_model.safetensors").write_bytes(b"retrained")
    assert merged_state(merged, inputs.adapter) == (False, f"{merged} was merged from a different adapter (stale)")
    assert ensure_merged(inputs.base_model, inputs.adapter, merged)["rebuilt"] is True
    assert len(merges) == 2 and (merged / "config.json").is_file()


def test_cli_stage2_exits_1_when_the_launch_fails(stage2_root: Path, standin_python: Path) -> None:
    config_dir = stage2_root / "config"
    config_dir.mkdir()
    for source in DEFAULT_CONFIG_DIR.glob("*.yaml"):
        (config_dir / source.name).write_text(source.read_text())
    stage2_yaml = config_dir / "phase3_soft_grpo.yaml"
    data = yaml.safe_load(stage2_yaml.read_text())
    data["runner"]["python"] = str(standin_python)
    data["preflight"]["compose_config"] = False
    data["preflight"]["check_artifacts"] = False  # the stand-in Stage 1 base has no weights
    stage2_yaml.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "main.py"), "--root", str(stage2_root), "stage2", "--market", "NQ",
         "--engine", "verl", "--test"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (run,) = _runs(stage2_root)
    assert run["return_code"] == 3 and Path(run["log_file"]).is_file()
