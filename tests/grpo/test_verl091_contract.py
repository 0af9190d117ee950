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
