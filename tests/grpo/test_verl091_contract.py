"""The verl engine's keys and outputs checked against the installed PyPI verl 0.9.1's own config and code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tradelab.config import load_config
from tradelab.grpo.config_checks import verl_problems
from tradelab.grpo.engines.base import override_map

A = "actor_rollout_ref"


@pytest.fixture(scope="module")
def verl_dir() -> Path:
    import verl

    assert verl.__version__.startswith("0.9"), verl.__version__
    return Path(verl.__file__).parent


def test_reward_v1_trainer_and_lora_keys_match_verl(verl_dir: Path) -> None:
    generated = yaml.safe_load((verl_dir / "trainer/config/_generated_ppo_trainer.yaml").read_text())
    assert set(generated["reward"]["custom_reward_function"]) >= {"path", "name"}
    assert generated["custom_reward_function"] == {"path": None, "name": None}  # the legacy stub
    assert generated["trainer"]["use_v1"] is True and generated[A]["rollout"]["mode"] == "async"
    args = override_map(load_config().soft_grpo.engines.verl.args)
    assert "reward.custom_reward_function.path" in args and "custom_reward_function.path" not in args
    assert f"{A}.rollout.mode" not in args and "trainer.use_v1" not in args  # verl's defaults: async, V1
    from verl.workers.config.model import HFModelConfig

    assert "lora_adapter_path" in HFModelConfig.__dataclass_fields__
    assert args[f"{A}.model.lora_adapter_path"] == "{adapter_path}" and args[f"{A}.model.lora_rank"] == "{lora_rank}"


def test_sync_rollout_mode_is_removed_and_preflight_says_so() -> None:
    from verl.workers.config.rollout import RolloutConfig

    with pytest.raises(ValueError, match="'sync' has been removed"):
        RolloutConfig(name="vllm", mode="sync")
    failures, _ = verl_problems({f"{A}.rollout.mode": "sync"})
    assert len(failures) == 1 and "removed in verl 0.9" in failures[0]
    failures, warnings = verl_problems({"custom_reward_function.path": "/x.py", "trainer.use_v1": False,
                                        f"{A}.model.lora_adapter_path": "/a", f"{A}.model.lora_rank": 0})
    assert len(failures) == 2 and len(warnings) == 1


def test_model_merger_writes_the_folder_the_runner_exports(verl_dir: Path) -> None:
    source = (verl_dir / "model_merger/base_model_merger.py").read_text()
    assert 'os.path.join(self.config.target_dir, "lora_adapter")' in source
    assert '"adapter_model.safetensors"' in source and '"adapter_config.json"' in source


def test_filter_groups_is_verl_091s_v1_dapo_and_the_plan_turns_it_on(verl_dir: Path) -> None:
    from tradelab.grpo.config_checks import filter_groups_check

    generated = yaml.safe_load((verl_dir / "trainer/config/_generated_ppo_trainer.yaml").read_text())
    assert generated["algorithm"]["filter_groups"]["enable"] is False  # off unless the plan asks
    replay = (verl_dir / "trainer/ppo/v1/trainer_base.py").read_text()
    assert 'filter_groups.get("enable", False)' in replay and "filter_groups.metric must be set" in replay
    args = override_map(load_config().soft_grpo.engines.verl.args)
    assert args["algorithm.filter_groups.enable"] == "true" and args["algorithm.filter_groups.metric"] == "reward"
    values = {"algorithm.filter_groups.enable": True, "algorithm.filter_groups.metric": "reward"}
    assert filter_groups_check(values, composed=True, dialect="pypi").status == "pass"
    checks = {
        "off": filter_groups_check({"algorithm.filter_groups.enable": False}, composed=True, dialect="pypi"),
        "absent": filter_groups_check({}, composed=True, dialect="pypi"),
        "v0": filter_groups_check({**values, "trainer.use_v1": False}, composed=True, dialect="pypi"),
        "no_metric": filter_groups_check({"algorithm.filter_groups.enable": True}, composed=True, dialect="pypi"),
        "fork": filter_groups_check({}, composed=False, dialect="fork"),
        "fork_on": filter_groups_check(values, composed=False, dialect="fork"),
    }
    assert {k: c.status for k, c in checks.items()} == {
        "off": "warn", "absent": "warn", "v0": "fail", "no_metric": "fail", "fork": "warn", "fork_on": "fail"}
    assert "not supported by the SofT-GRPO fork" in checks["fork"].message
    # The fork's own trainer config (verl 0.4.x, the subset kept beside ARCHITECTURE.md) has no such key.
    fork_yaml = Path("/work/shared/upstream/SofT-GRPO/verl-0.4.x/verl/trainer/config/ppo_trainer.yaml")
    if fork_yaml.is_file():
        assert "filter_groups" not in yaml.safe_load(fork_yaml.read_text())["algorithm"]
