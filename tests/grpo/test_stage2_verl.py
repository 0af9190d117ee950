"""Stage 2 against the installed verl itself: its dataset, its reward loader and its Hydra composition."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tradelab.config import load_config
from tradelab.grpo.dataset import export_dataset
from tradelab.grpo.engines import base
from tradelab.grpo.runner import build_plan


def test_parquet_loads_with_verls_rlhf_dataset(stage2_root: Path, tiny_advisor_dir: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    metadata = export_dataset(stage2_root, "NQ", load_config())
    tokenizer = AutoTokenizer.from_pretrained(tiny_advisor_dir)
    data_config = OmegaConf.create({
        "prompt_key": "prompt", "max_prompt_length": 4096, "filter_overlong_prompts": True,
        "filter_overlong_prompts_workers": 1, "truncation": "error", "cache_dir": str(tmp_path / "verl_cache"),
        "return_raw_chat": True,
    })
    dataset = RLHFDataset(metadata["paths"]["train"], tokenizer, data_config)
    assert len(dataset) == metadata["counts"]["train"]
    item = dataset[0]
    assert [m["role"] for m in item["raw_prompt"]] == ["system", "user"]
    assert item["reward_model"]["style"] == "rule" and item["data_source"] == "tradelab/NQ"
    assert item["index"] == 0 and item["extra_info"]["split"] == "train"


def test_verls_custom_reward_loader_calls_compute_score(stage2_root: Path) -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    plan = build_plan(stage2_root, "NQ", load_config(profile="smoke"), engine="verl")
    args = base.override_map(plan.overrides)
    config = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": args["reward.custom_reward_function.path"], "name": args["reward.custom_reward_function.name"],
        "reward_kwargs": {},
    }}})
    score = get_custom_reward_fn(config)
    metadata = export_dataset(stage2_root, "NQ", load_config(profile="smoke"))
    import pyarrow.parquet as pq

    row = pq.read_table(metadata["paths"]["train"]).to_pylist()[0]
    result = score(data_source=row["data_source"], solution_str="BUY | 0.7 | up",
                   ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
    garbage = score(data_source=row["data_source"], solution_str="???",
                    ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
    assert set(result) == set(garbage) and "score" in result
    assert result["score"] > garbage["score"]


@pytest.mark.slow
def test_main_ppo_composes_the_runners_exact_overrides(stage2_root: Path, tmp_path: Path) -> None:
    export_dataset(stage2_root, "NQ", load_config(profile="smoke"))
    plan = build_plan(stage2_root, "NQ", load_config(profile="smoke"), engine="verl")
    done = subprocess.run([*plan.argv, "--cfg", "job"], cwd=tmp_path, env=plan.environment(), capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    composed = yaml.safe_load(done.stdout)
    model = composed["actor_rollout_ref"]["model"]
    assert composed["reward"]["custom_reward_function"]["path"] == str(base.reward_path())
    assert composed["reward"]["custom_reward_function"]["name"] == "compute_score"
    assert model["lora_rank"] == 8 and model["lora_adapter_path"] == str(plan.adapter_path)
    assert composed["actor_rollout_ref"]["rollout"]["n"] == 2
    assert composed["algorithm"]["adv_estimator"] == "grpo"
    assert composed["data"]["train_files"] == base.override_map(plan.overrides)["data.train_files"]
