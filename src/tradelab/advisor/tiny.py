"""The embedded smoke-test advisor: a tiny Llama causal LM with a locally trained byte-level BPE tokenizer.

:func:`ensure_tiny_advisor` builds it under ``models/base/tiny-advisor/`` on first use, so every stage runs on a fresh
machine with nothing downloaded. It is saved with ``save_pretrained`` and loaded through the same code as real weights
(:mod:`tradelab.advisor.load`). The weights are random until the warm start teaches the answer format; the marker file
``tradelab_smoke_test_model.json`` lets logs and manifests say that this is a smoke-test model.

Same config and seed -> the same tokenizer and weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import TradelabError
from tradelab.fileio import staged_dir

if TYPE_CHECKING:
    from tradelab.config.llm_schema import TinyModelConfig
    from tradelab.config.schema import TradelabConfig

log = logging.getLogger(__name__)

SMOKE_MARKER = "tradelab_smoke_test_model.json"
"""File in a model directory that marks it as the embedded smoke-test model."""
TINY_MODEL_NAME = "tradelab/tiny-advisor"
BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>")
THINK_TOKENS: tuple[str, ...] = ("<think>", "</think>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
"""Jinja chat template: ``<|bos|><|system|>...<|end|><|user|>...<|end|><|assistant|>``; answers end with ``<|end|>``."""


def is_smoke_test_model(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds the embedded smoke-test model (it has the marker file)."""
    return (Path(model_dir) / SMOKE_MARKER).is_file()


def _complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in (SMOKE_MARKER, "config.json", "tokenizer.json"))


def _corpus(tiny: TinyModelConfig, config: TradelabConfig) -> list[str]:
    """Prompts and teacher answers of synthetic contexts, plus every action name and alias, for the tokenizer.

    The prompts are the ones the tiny advisor is asked (``prompts.style`` resolved for the tiny advisor as the base),
    whichever base the caller's profile defaults to.
    """
    from tradelab.advisor.prompts import build_messages
    from tradelab.advisor.synth import random_contexts
    from tradelab.advisor.teacher import teacher_response
    from tradelab.config.llm_schema import TINY_ADVISOR_MODEL
    from tradelab.core.parse import ALIASES

    llm = config.llm.model_copy(update={"model": TINY_ADVISOR_MODEL})
    texts: list[str] = [" ".join(ALIASES), "ACTION | confidence | reason", "0 1 2 3 4 5 6 7 8 9 % . , : ; { } \""]
    for context in random_contexts(tiny.corpus_contexts, tiny.seed):
        texts.extend(m["content"] for m in build_messages(context, llm))
        texts.append(teacher_response(context))
    return texts


def build_tokenizer(texts: list[str], vocab_size: int, max_length: int) -> Any:
    """Train a byte-level BPE tokenizer on ``texts``; wrap it as a ``PreTrainedTokenizerFast`` with the chat template.

    Byte-level BPE never needs an unknown token, so any text a real context produces still encodes.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, *ROLE_TOKENS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    # Think tags stay visible in decoded text (not special) but always encode as one token each.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS), model_max_length=max_length, padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tiny: TinyModelConfig, tokenizer: Any) -> Any:
    """A freshly initialised (seeded) ``LlamaForCausalLM`` sized by ``tiny``, tied input/output embeddings."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers, num_attention_heads=tiny.num_heads, num_key_value_heads=tiny.num_kv_heads,
        max_position_embeddings=tiny.max_position_embeddings, initializer_range=tiny.initializer_range,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(tiny.seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    return model


def _write(target: Path, tiny: TinyModelConfig, config: TradelabConfig) -> None:
    from transformers.utils import logging as hf_logging

    from tradelab.config import config_hash
    from tradelab.fileio import atomic_write_json
    from tradelab.provenance import origin

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would print from library code
    tokenizer = build_tokenizer(_corpus(tiny, config), tiny.vocab_size, tiny.max_position_embeddings)
    model = build_model(tiny, tokenizer)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    n_params = sum(p.numel() for p in model.parameters())
    atomic_write_json(target / SMOKE_MARKER, {
        "smoke_test_model": True, "name": TINY_MODEL_NAME, "parameters": n_params, "vocab_size": len(tokenizer),
        "description": "Embedded tiny Llama for smoke tests and CI; not a trading model until trained.",
        "tiny_config": tiny.model_dump(), "origin": origin(config_hash(tiny), tiny.seed),
    })


def ensure_tiny_advisor(root: str | Path, config: TradelabConfig | None = None) -> Path:
    """Build the tiny advisor under ``<root>/models/base/tiny-advisor`` unless it is already there.

    Built in a staging folder that replaces the target only when complete (:func:`tradelab.fileio.staged_dir`), so a
    crash never leaves a half-written model; the build is seeded, so a concurrent builder writes the same files.

    Args:
        root: Workspace root.
        config: The whole config (for ``llm.tiny`` and the prompt templates); default ``load_config()``.

    Returns:
        The model directory.

    Raises:
        TradelabError: The directory exists but is not a complete tiny advisor.
    """
    from tradelab.paths import Workspace

    target = Workspace.at(root).tiny_advisor_dir()
    if _complete(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise TradelabError(
            f"{target}: exists but is not a complete tiny advisor (missing {SMOKE_MARKER}, config.json or "
            "tokenizer.json); delete the folder and it is rebuilt on next use"
        )
    if config is None:
        from tradelab.config import load_config

        config = load_config()
    with staged_dir(target) as staging:
        _write(staging, config.llm.tiny, config)
    log.info("built the tiny smoke-test advisor at %s", target)
    return target
