"""What differs between base-model families: end-of-turn ids, chat-template switches, LoRA targets, sliding windows.

Everything here is read off the loaded model and tokenizer (config, generation config, chat template, module tree),
never off a table of model names, so a family this module has not seen works as long as it follows the same
conventions as Qwen2/Qwen3, Llama-3, Gemma-3 and Phi-3:

- **End of turn.** Chat models end an answer with their template's end-of-turn token (``<|im_end|>``,
  ``<|eot_id|>``, ``<end_of_turn>``, ``<|end|>``), which is often not the tokenizer's EOS; ``generation_config``
  lists the ids generation must stop on. :func:`end_of_turn_id` finds the template's token by rendering an
  assistant turn; :func:`stop_token_ids` joins it with the EOS ids.
- **Thinking.** Qwen3's template opens a ``<think>`` block unless ``enable_thinking=False``;
  :func:`chat_template_kwargs` turns it off wherever the template knows the switch.
- **Fused projections.** Phi-3 packs q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``;
  :func:`resolve_lora_targets` maps the usual names onto the module names the model really has.
- **Sliding windows.** :func:`sliding_window` is the smallest attention window any layer uses (None: all global).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tradelab.errors import ConfigError

ALL_LINEAR = "all-linear"
"""PEFT's shorthand for every linear layer except the output head; accepted as the only entry of target_modules."""
FUSED_PROJECTIONS: dict[str, tuple[str, ...]] = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
}
"""Fused module name -> the separate projection names it replaces (Phi-3 layout)."""
_SENTINEL = "tradelab-answer-sentinel"


def chat_template_kwargs(tokenizer: Any) -> dict[str, Any]:
    """Extra template variables for advisor prompts: ``enable_thinking=False`` when the template reads it.

    The advisor answers in one line; a template that opens a thinking block by default (Qwen3) would spend the
    whole token budget inside it.
    """
    template = getattr(tokenizer, "chat_template", None)
    text = " ".join(str(t) for t in template.values()) if isinstance(template, dict) else str(template or "")
    return {"enable_thinking": False} if "enable_thinking" in text else {}


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The token the chat template closes an assistant turn with, or None when it closes with plain text.

    Renders ``[user, assistant]`` with a sentinel answer and tokenises what follows the sentinel; the first token
    counts when it is a special (added) token, as end-of-turn markers are in every supported family.
    """
    from jinja2 import TemplateError

    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, **chat_template_kwargs(tokenizer))
    except (TemplateError, ValueError, TypeError):
        return None
    _, found, tail = text.rpartition(_SENTINEL)
    if not found:
        return None
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    special = set(getattr(tokenizer, "all_special_ids", ())) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    return int(ids[0]) if ids and ids[0] in special else None


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return [int(v) for v in value if isinstance(v, int)]
    return []


def answer_end_id(tokenizer: Any) -> int:
    """The id a trained answer ends with: the template's end-of-turn token, else the tokenizer's EOS.

    Raises:
        ConfigError: The tokenizer has neither.
    """
    found = end_of_turn_id(tokenizer)
    if found is not None:
        return found
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"llm.model: tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no EOS or end-of-turn token; "
            "point llm.model at a chat/instruct model"
        )
    return int(tokenizer.eos_token_id)


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """Ids that end an answer: the tokenizer's EOS, ``generation_config.eos_token_id`` (int or list) and the chat
    template's end-of-turn token, sorted and unique."""
    ids = set(_ids(tokenizer.eos_token_id)) | set(_ids(getattr(generation_config, "eos_token_id", None)))
    eot = end_of_turn_id(tokenizer)
    if eot is not None:
        ids.add(eot)
    return sorted(ids)


def sliding_window(config: Any) -> int | None:
    """The smallest attention window of any layer, or None when every layer attends globally.

    ``layer_types`` (Gemma-3, Qwen2/3) says which layers slide; without it (Phi-3, Mistral) a set
    ``sliding_window`` applies to every layer.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None)
    if not window:
        return None
    layer_types = getattr(text, "layer_types", None)
    if layer_types is not None and not any("sliding" in str(t) for t in layer_types):
        return None
    return int(window)


def linear_module_names(model: Any) -> list[str]:
    """Sorted last-name components of the model's linear layers (``nn.Linear`` and GPT-2's ``Conv1D``), without
    the output head: the names LoRA ``target_modules`` match against."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head}
    return sorted(names)


def resolve_lora_targets(model: Any, requested: Sequence[str]) -> list[str] | str:
    """The ``target_modules`` to give PEFT for this model.

    Names the model has are kept; a separate projection name the model fuses (``q_proj`` on Phi-3) becomes the
    fused module (``qkv_proj``); ``[all-linear]`` is passed through to PEFT.

    Raises:
        ConfigError: A name matches no linear module of the model, directly or through a fused one; the message
            names ``llm.lora.target_modules`` and lists the model's own linear module names.
    """
    if list(requested) == [ALL_LINEAR]:
        return ALL_LINEAR
    available = linear_module_names(model)
    resolved: list[str] = []
    missing: list[str] = []
    for name in requested:
        if name in available:
            match = name
        else:
            match = next((fused for fused, parts in FUSED_PROJECTIONS.items() if name in parts and fused in available),
                         None)
        if match is None:
            missing.append(name)
        elif match not in resolved:
            resolved.append(match)
    if missing:
        model_type = getattr(getattr(model, "config", None), "model_type", "this model")
        raise ConfigError(
            f"config/llm.yaml: llm.lora.target_modules = {list(requested)}: {missing} match no linear module of "
            f"{model_type}; its linear modules are {available}. Set target_modules to some of those names, "
            f"or to [{ALL_LINEAR}]"
        )
    return resolved


def adapted_modules(model: Any) -> dict[str, int]:
    """Last-name component -> how many modules of that name carry a LoRA adapter (PEFT's ``lora_A``)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})) > 0:
            leaf = name.rsplit(".", 1)[-1]
            counts[leaf] = counts.get(leaf, 0) + 1
    return dict(sorted(counts.items()))
