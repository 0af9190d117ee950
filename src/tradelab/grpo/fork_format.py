"""Write a saved model folder in the form transformers 4.51 (the SofT-GRPO fork's pin) reads identically.

transformers 5 saves what 4.51 misreads:

- ``config.json`` keeps RoPE only in ``rope_parameters``; 4.51 looks for ``rope_theta`` and ``rope_scaling`` and,
  finding neither, silently uses theta 10000 with no scaling. Here ``rope_theta`` and ``rope_scaling`` (the legacy
  dict with ``rope_type``, or null for plain RoPE) are written next to ``rope_parameters`` (which 4.51 ignores and
  5 prefers), and ``torch_dtype`` next to ``dtype``.
- ``tokenizer_config.json`` lists extra special tokens as a list under ``extra_special_tokens`` (4.51 expects a
  name -> token mapping there and fails with ``'list' object has no attribute 'keys'``): they move to
  ``additional_special_tokens``. Its ``tokenizer_class`` ``TokenizersBackend`` does not exist in 4.51: a folder
  with ``tokenizer.json`` is a ``PreTrainedTokenizerFast`` there.

The rewrite is idempotent and keeps every other key; whether the result really loads identically is proven by
preflight's ``artifact_parity`` check, which loads it under the launch interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradelab.errors import TradelabError
from tradelab.fileio import atomic_write_json

FAST_BACKENDS: frozenset[str] = frozenset({"TokenizersBackend"})
"""transformers 5 tokenizer classes with no 4.51 counterpart of the same name."""


def legacy_config(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``config.json`` content with ``rope_theta`` / ``rope_scaling`` / ``torch_dtype`` as 4.51 reads them.

    Returns:
        ``(new content, what changed)``.

    Raises:
        TradelabError: ``rope_parameters`` is per layer type (a form 4.51 has no equivalent for).
    """
    out = dict(data)
    changes: list[str] = []
    params = data.get("rope_parameters")
    if isinstance(params, dict) and params:
        if all(isinstance(v, dict) for v in params.values()):
            raise TradelabError(f"config.json: rope_parameters is per layer type ({sorted(params)}); transformers "
                                f"4.51 cannot express that; use a model family the fork supports")
        theta = params.get("rope_theta")
        if theta is not None and out.get("rope_theta") != theta:
            out["rope_theta"] = theta
            changes.append(f"rope_theta = {theta}")
        kind = params.get("rope_type", params.get("type", "default"))
        if "partial_rotary_factor" in params and "partial_rotary_factor" not in out:
            out["partial_rotary_factor"] = params["partial_rotary_factor"]
            changes.append(f"partial_rotary_factor = {params['partial_rotary_factor']}")
        scaling = None if kind == "default" else {
            k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor", "type")}
        if scaling is not None:
            scaling["rope_type"] = kind
        if out.get("rope_scaling", "absent") != scaling:
            out["rope_scaling"] = scaling
            changes.append(f"rope_scaling = {scaling}")
    if "dtype" in data and "torch_dtype" not in data:
        out["torch_dtype"] = data["dtype"]
        changes.append(f"torch_dtype = {data['dtype']}")
    return out, changes


def legacy_tokenizer_config(data: dict[str, Any], has_tokenizer_json: bool) -> tuple[dict[str, Any], list[str]]:
    """``tokenizer_config.json`` content 4.51 loads: extra special tokens as a list it reads, a class it knows."""
    out = dict(data)
    changes: list[str] = []
    extra = data.get("extra_special_tokens")
    if isinstance(extra, list):
        names = [t if isinstance(t, str) else t.get("content") for t in extra]
        merged = list(dict.fromkeys([*(data.get("additional_special_tokens") or []), *names]))
        out["additional_special_tokens"] = merged
        del out["extra_special_tokens"]
        changes.append(f"extra_special_tokens list -> additional_special_tokens {merged}")
    cls = data.get("tokenizer_class")
    if cls in FAST_BACKENDS:
        if not has_tokenizer_json:
            raise TradelabError(f"tokenizer_config.json: tokenizer_class {cls} without tokenizer.json; save the "
                                f"tokenizer with its tokenizer.json")
        out["tokenizer_class"] = "PreTrainedTokenizerFast"
        changes.append(f"tokenizer_class {cls} -> PreTrainedTokenizerFast")
    return out, changes


def write_fork_format(model_dir: str | Path) -> list[str]:
    """Rewrite ``config.json`` and ``tokenizer_config.json`` of ``model_dir`` in place (each atomically).

    Returns:
        One line per change made (empty when the folder was already in that form).
    """
    folder = Path(model_dir)
    changes: list[str] = []
    config_path = folder / "config.json"
    config, made = legacy_config(json.loads(config_path.read_text(encoding="utf-8")))
    if made:
        atomic_write_json(config_path, config)
        changes += [f"config.json: {m}" for m in made]
    tok_path = folder / "tokenizer_config.json"
    if tok_path.is_file():
        tok, made = legacy_tokenizer_config(json.loads(tok_path.read_text(encoding="utf-8")),
                                            (folder / "tokenizer.json").is_file())
        if made:
            atomic_write_json(tok_path, tok)
            changes += [f"tokenizer_config.json: {m}" for m in made]
    return changes
