"""The round trip catches an adapter that is not the trained one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tradelab.config import TradelabConfig
from tradelab.grpo.roundtrip import PROBE_COMPLETION, adapter_round_trip, completion_logprobs


@pytest.mark.slow
def test_round_trip_passes_for_the_same_adapter_and_fails_for_a_changed_one(
        tiny_advisor_dir: Path, warm_adapter_dir: Path, config: TradelabConfig, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from tradelab.advisor.load import load_advisor_model

    llm = config.llm.model_copy(update={"model": str(tiny_advisor_dir)})
    trained = load_advisor_model(config.model_copy(update={"llm": llm}), tmp_path, adapter_path=warm_adapter_dir,
                                 device="cpu")
    prompts = [trained.tokenizer("<|user|>NQ flat, ATR 4.0<|end|><|assistant|>")["input_ids"]]
    values = completion_logprobs(trained.model, trained.tokenizer, prompts, PROBE_COMPLETION)
    same = adapter_round_trip(values, prompts, config, tmp_path, tiny_advisor_dir, warm_adapter_dir, device="cpu")
    assert same["ok"] and same["max_abs_diff"] < 1e-4
    changed = tmp_path / "changed"
    shutil.copytree(warm_adapter_dir, changed)
    weights = load_file(changed / "adapter_model.safetensors")
    save_file({k: (v * 3 if "lora_B" in k else v) for k, v in weights.items()}, changed / "adapter_model.safetensors")
    assert any(torch.count_nonzero(v) for k, v in weights.items() if "lora_B" in k)
    other = adapter_round_trip(values, prompts, config, tmp_path, tiny_advisor_dir, changed, device="cpu")
    assert not other["ok"] and other["max_abs_diff"] > 1e-2
