"""Preflight: SofT-GRPO repository discovery, batch rules, pitfalls, launch-environment probing, the manifest record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage2_factory import fake_soft_grpo_repo, with_overrides

from tradelab.config import load_config
from tradelab.grpo.engines.soft_grpo import repo_check
from tradelab.grpo.config_checks import batch_problems, soft_grpo_problems
from tradelab.grpo.dataset import export_dataset
from tradelab.grpo.engines.base import repo_root_source, resolve_repo_root
from tradelab.grpo.engines.soft_grpo import REQUIRED_FILES
from tradelab.grpo.preflight import run_preflight
from tradelab.manifest import load_manifest

A = "actor_rollout_ref"
GOOD = {
    "data.train_batch_size": 4, f"{A}.rollout.n": 2, f"{A}.actor.ppo_mini_batch_size": 4,
    f"{A}.actor.ppo_micro_batch_size": None, f"{A}.actor.ppo_micro_batch_size_per_gpu": 1,
    f"{A}.rollout.log_prob_micro_batch_size": None, f"{A}.rollout.log_prob_micro_batch_size_per_gpu": 1,
    f"{A}.ref.log_prob_micro_batch_size": None, f"{A}.ref.log_prob_micro_batch_size_per_gpu": 1,
    f"{A}.actor.use_kl_loss": True, "trainer.n_gpus_per_node": 2, "trainer.nnodes": 1, "trainer.save_freq": 1,
}


def _statuses(report: object) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}  # type: ignore[attr-defined]


def test_batch_rules_pass_and_each_rule_fires() -> None:
    assert batch_problems(GOOD, train_rows=10, min_train_batches=1) == []
    cases = {
        f"{A}.rollout.n": (1, "at least 2 rollouts"),
        "trainer.n_gpus_per_node": (3, "not divisible"),
        f"{A}.actor.ppo_mini_batch_size": (8, "< actor_rollout_ref.actor.ppo_mini_batch_size"),
        f"{A}.actor.ppo_micro_batch_size": (2, "exactly one of"),
        f"{A}.ref.log_prob_micro_batch_size_per_gpu": (None, "exactly one of"),
        "trainer.save_freq": (-1, "save_freq"),
    }
    for key, (value, needle) in cases.items():
        problems = batch_problems({**GOOD, key: value}, train_rows=10, min_train_batches=1)
        assert any(needle in p for p in problems), (key, problems)
    assert any("train rows = 3" in p for p in batch_problems(GOOD, train_rows=3, min_train_batches=1))


def test_soft_grpo_pitfalls() -> None:
    fine = {f"{A}.model.use_remove_padding": True, f"{A}.rollout.enable_soft_thinking": True,
            f"{A}.actor.strategy": "fsdp", f"{A}.rollout.name": "sglang",
            f"{A}.rollout.add_noise_gumbel_softmax": True, f"{A}.model.lora_rank": 0,
            f"{A}.actor.checkpoint.contents": ["model", "optimizer", "extra", "hf_model"]}
    assert soft_grpo_problems(fine) == ([], [])
    failures, _ = soft_grpo_problems({**fine, f"{A}.model.use_remove_padding": False,
                                      f"{A}.rollout.enable_soft_thinking": False, f"{A}.model.lora_rank": 8})
    text = " ".join(failures)
    assert "use_remove_padding" in text and "enable_soft_thinking" in text and "cannot train LoRA" in text


def test_soft_grpo_pitfalls_found_on_the_real_tree() -> None:
    fine = {f"{A}.model.use_remove_padding": True, f"{A}.rollout.enable_soft_thinking": True,
            f"{A}.rollout.name": "sglang", f"{A}.rollout.add_noise_gumbel_softmax": True,
            f"{A}.actor.checkpoint.contents": "[model,optimizer,extra,hf_model]"}
    assert soft_grpo_problems(fine) == ([], [])
    fused, _ = soft_grpo_problems({**fine, f"{A}.model.use_fused_kernels": True})
    assert len(fused) == 1 and "skips the Gumbel" in fused[0]
    both, _ = soft_grpo_problems({**fine, f"{A}.rollout.add_noise_dirichlet": True})
    assert len(both) == 1 and "Dirichlet noise while the actor scores Gumbel" in both[0]
    sharded, _ = soft_grpo_problems({**fine, f"{A}.actor.checkpoint.contents": ["model", "optimizer", "extra"]})
    assert len(sharded) == 1 and "no hf_model" in sharded[0]


def test_per_gpu_mini_batch_rule_of_the_fork_workers() -> None:
    eight = {**GOOD, "trainer.n_gpus_per_node": 8, "data.train_batch_size": 4, f"{A}.rollout.n": 2,
             f"{A}.actor.ppo_mini_batch_size": 2}
    # 2 x 2 / 8 = 0 per GPU: fsdp_workers.py asserts "should be larger than 0 after normalization"
    assert any("= 0 per GPU" in p for p in batch_problems(eight, 100, 1))
    assert batch_problems({**eight, f"{A}.actor.ppo_mini_batch_size": 4}, 100, 1) == []
    odd = {**eight, f"{A}.actor.ppo_mini_batch_size": 4, f"{A}.actor.ppo_micro_batch_size_per_gpu": 3}
    assert any("not divisible by ppo_micro_batch_size_per_gpu = 3" in p for p in batch_problems(odd, 100, 1))


def test_flash_attn_message_says_what_its_absence_does() -> None:
    from tradelab.grpo.checks import flash_attn_check
    from tradelab.grpo.engines.registry import get_engine

    missing = {"flash_attn": {"importable": False, "error": "No module named 'flash_attn'"},
               "flash_attn_cross_entropy": {"importable": False, "error": "No module named 'flash_attn'"}}
    check = flash_attn_check(missing, get_engine("soft-grpo").flash_attn_required)
    assert check.status == "fail" and "crashes on CUDA" in check.message and "silently" not in check.message
    partial = {**missing, "flash_attn": {"importable": True},
               "flash_attn_cross_entropy": {"importable": False, "error": "No module named 'triton'"}}
    assert "silently falls back" in flash_attn_check(partial, get_engine("soft-grpo").flash_attn_required).message
    assert flash_attn_check(missing, get_engine("verl").flash_attn_required).status == "warn"


def test_context_length_against_the_model(tmp_path: Path) -> None:
    from tradelab.grpo.config_checks import context_check

    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 512}))
    launch = {"data.max_prompt_length": 1024, "data.max_response_length": 512}
    check = context_check(launch, tmp_path)
    assert check.status == "fail" and "1536 > max_position_embeddings = 512" in check.message
    assert context_check({**launch, "data.max_prompt_length": 384, "data.max_response_length": 64},
                         tmp_path).status == "pass"


def test_gpu_count_uses_every_visible_gpu_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradelab.grpo.checks import gpu_count_check
    from tradelab.grpo.engines.base import gpus_per_node

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    assert gpus_per_node(load_config()) == 8
    assert gpus_per_node(with_overrides(runner__n_gpus_per_node=2)) == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus_per_node(load_config()) == 1
    assert gpu_count_check(8, 1).status == "warn" and "7 GPU(s) stay idle" in gpu_count_check(8, 1).message
    assert gpu_count_check(1, 8).status == "fail" and gpu_count_check(8, 8).status == "pass"


def test_repo_check_accepts_a_complete_tree_and_names_every_missing_file(tmp_path: Path) -> None:
    assert repo_check(fake_soft_grpo_repo(tmp_path / "full")).status == "pass"
    lacking = (REQUIRED_FILES[1], REQUIRED_FILES[6], "script")
    check = repo_check(fake_soft_grpo_repo(tmp_path / "partial", skip=lacking))
    assert check.status == "fail"
    assert REQUIRED_FILES[1] in check.message and REQUIRED_FILES[6] in check.message
    assert "SofT-GRPO-deepscaler-8k*.sh" in check.message
    assert REQUIRED_FILES[0] not in check.message
    plain = fake_soft_grpo_repo(tmp_path / "plain")
    (plain / "verl-0.4.x/verl/utils/torch_functional.py").write_text("# upstream verl without the fork\n")
    assert "logprobs_from_logits_topk_gumbel" in repo_check(plain).message


def test_repo_root_env_override_absolute_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config()
    monkeypatch.delenv("SOFT_GRPO_REPO_ROOT", raising=False)
    assert resolve_repo_root(tmp_path, config) == tmp_path / config.soft_grpo.repo_root
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", str(tmp_path / "elsewhere"))
    assert resolve_repo_root(tmp_path, config) == tmp_path / "elsewhere"
    # A relative environment variable means the current directory, as in any shell; the config's means --root.
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", "rel/repo")
    assert resolve_repo_root(tmp_path / "ws", config) == tmp_path / "elsewhere" / "rel" / "repo"
    assert "current directory" in repo_root_source(config)
    monkeypatch.delenv("SOFT_GRPO_REPO_ROOT")
    assert "relative to --root" in repo_root_source(config)


def test_soft_grpo_preflight_with_env_override(stage2_root: Path, standin_python: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    export_dataset(stage2_root, "NQ", load_config(profile="smoke"))
    repo = fake_soft_grpo_repo(tmp_path / "pod" / "SofT-GRPO-master-main")
    monkeypatch.setenv("SOFT_GRPO_REPO_ROOT", str(repo))
    monkeypatch.setenv("STANDIN_VERL_VERSION", "0.4.0")
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    report = run_preflight(stage2_root, "NQ", config, engine="soft-grpo", dataset_only=False)
    statuses = _statuses(report)
    assert statuses["soft_grpo_repo"] == "pass" and statuses["verl"] == "pass"
    assert statuses["stage1_merged"] == "warn"
    assert statuses["soft_grpo_settings"] == "pass" and statuses["batch_rules"] == "pass"
    # Plain sglang (the fork's version number, no enable_soft_thinking in its server args) is caught.
    assert statuses["rollout_backend"] == "fail" and "enable_soft_thinking" in report.summary()
    monkeypatch.setenv("STANDIN_SOFT_SGLANG", "1")
    report = run_preflight(stage2_root, "NQ", config, engine="soft-grpo", dataset_only=False)
    assert _statuses(report)["rollout_backend"] == "pass"
    assert report.ok, report.summary()
    assert report.plan["env_overrides"]["PYTHONPATH"].split(":")[0] == str(repo / "verl-0.4.x")
    recorded = load_manifest(stage2_root, "NQ")["stage2"]["preflight"]
    assert recorded["engine"] == "soft-grpo" and recorded["ok"] is True
    json.dumps(report.to_dict())

    (repo / REQUIRED_FILES[2]).unlink()
    report = run_preflight(stage2_root, "NQ", config, engine="soft-grpo", dataset_only=False)
    assert not report.ok and REQUIRED_FILES[2] in report.summary()


def test_gpu_checks_skip_in_dataset_only_and_fail_without_cuda(stage2_root: Path, standin_python: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    export_dataset(stage2_root, "NQ", load_config(profile="smoke"))
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    monkeypatch.setenv("STANDIN_CUDA", "0")
    skipped = _statuses(run_preflight(stage2_root, "NQ", config, engine="verl", dataset_only=True))
    assert {skipped[k] for k in ("cuda", "gpu_count", "flash_attn", "rollout_backend")} == {"skip"}
    launching = run_preflight(stage2_root, "NQ", config, engine="verl", dataset_only=False)
    assert _statuses(launching)["cuda"] == "fail" and not launching.ok


def test_wrong_dialect_and_missing_stage1_fail(tmp_path: Path, stage2_root: Path, standin_python: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    export_dataset(stage2_root, "NQ", load_config(profile="smoke"))
    monkeypatch.setenv("STANDIN_VERL_VERSION", "0.4.0")
    config = with_overrides("smoke", runner__python=str(standin_python), preflight__compose_config=False)
    report = run_preflight(stage2_root, "NQ", config, engine="verl", dataset_only=True)
    assert _statuses(report)["verl"] == "fail" and "PyPI verl >= 0.9" in report.summary()
    empty = run_preflight(tmp_path / "empty", "NQ", config, engine="local", dataset_only=True)
    assert _statuses(empty) == {"base_model": "fail", "stage1_adapter": "fail", "dataset": "fail"}
    assert "python main.py stage1 --market NQ" in empty.summary()


def test_missing_interpreter_is_a_clear_failure(stage2_root: Path, tmp_path: Path) -> None:
    export_dataset(stage2_root, "NQ", load_config(profile="smoke"))
    config = with_overrides("smoke", runner__python=str(tmp_path / "no" / "python"))
    report = run_preflight(stage2_root, "NQ", config, engine="verl", dataset_only=True)
    assert _statuses(report)["launch_python"] == "fail" and "runner.python" in report.summary()


@pytest.mark.slow
def test_verl_preflight_in_the_real_environment_composes_and_validates(stage2_root: Path,
                                                                       standin_python: Path) -> None:
    # A sides-balanced train file: the plan's data.shuffle=False must compose to false in the installed verl.
    config = load_config(profile="smoke", overrides={"soft_grpo.dataset.train_order": "sides_balanced"})
    export_dataset(stage2_root, "NQ", config)
    report = run_preflight(stage2_root, "NQ", config, engine="verl", dataset_only=True)
    statuses = _statuses(report)
    assert statuses["verl"] == "pass" and statuses["reward_import"] == "pass"
    assert statuses["config_compose"] == "pass", report.summary()
    assert statuses["filter_groups"] == "pass", report.summary()  # composed by the installed verl 0.9
    assert statuses["train_order"] == "pass", report.summary()
    assert report.ok, report.summary()
    # The stand-in answers the probe instantly and hands composition to the real interpreter.
    bad = run_preflight(stage2_root, "NQ", with_overrides("smoke", runner__python=str(standin_python)), engine="verl",
                        dataset_only=True, extra_overrides=["actor_rollout_ref.rollout.no_such_key=1"])
    assert _statuses(bad)["config_compose"] == "fail" and "no_such_key" in bad.summary()
