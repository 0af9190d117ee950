"""What an interpreter reads from a model folder: config, tokenizer, weights and the logits of one prompt.

Preflight runs this file by path under ``runner.python`` (``<python> artifact_probe.py --out F --model-dir D
--messages M``) and calls :func:`describe` in tradelab's own process on the same folder; :func:`compare` then names
every difference. It imports nothing from tradelab and only the standard library at module level, so it runs under
the SofT-GRPO fork's environment (transformers 4.51) as well as tradelab's (transformers 5).

The tokenizer is loaded the way the fork's verl loads it (``verl.utils.tokenizer.hf_tokenizer``: pad = eos when
the tokenizer has no pad) and the prompt is built the way its ``RLHFDataset`` builds one (chat template with the
generation prompt, then encoded without special tokens).
"""

import argparse
import hashlib
import json
import sys
import traceback

PROBE_TEXT = "<think>\nATR is wide; trend up.\n</think>\nBUY | 0.70 | breakout above the range"
"""A completion-shaped text whose tokenization both interpreters must agree on."""
MAX_PROMPT_TOKENS = 96
FAR_POSITION = 16384
"""Positions are also shifted to start here (when the model allows it), where RoPE scaling changes the result."""


def _error(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1500:]


def _rope(config, major):
    """``{"rope_theta", "rope_type", **scaling}`` as this transformers' models use them.

    transformers >= 5 builds RoPE from ``rope_parameters``; 4.x from ``rope_theta`` and ``rope_scaling`` and keeps
    a ``rope_parameters`` key in the file as an unused attribute, so each major version is read its own way.
    """
    params = getattr(config, "rope_parameters", None)
    if major >= 5 and isinstance(params, dict) and "rope_theta" in params:
        out = dict(params)
    else:
        out = dict(getattr(config, "rope_scaling", None) or {})
        out["rope_theta"] = getattr(config, "rope_theta", None)
    out["rope_type"] = out.pop("type", None) or out.get("rope_type") or "default"
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in sorted(out.items())}


def _verl_hf_tokenizer():
    """verl's ``hf_tokenizer`` and where it came from, or ``(None, None)``.

    The fork's ``verl/utils/tokenizer.py`` needs only transformers, so it is loaded by path from ``sys.path``
    (importing the ``verl`` package would pull its whole training stack); a verl whose tokenizer module is laid out
    differently is imported.
    """
    import importlib.util
    import os

    for entry in sys.path:
        path = os.path.join(entry or ".", "verl", "utils", "tokenizer.py")
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_fork_verl_tokenizer", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.hf_tokenizer, f"hf_tokenizer from {path}"
    try:
        from verl.utils.tokenizer import hf_tokenizer

        return hf_tokenizer, "verl.utils.tokenizer.hf_tokenizer"
    except Exception:  # noqa: BLE001 - no usable verl here: transformers directly, with verl's pad rule
        return None, None


def _load_tokenizer(model_dir, use_verl):
    hf_tokenizer, where = _verl_hf_tokenizer() if use_verl else (None, None)
    if hf_tokenizer is not None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its pad = eos notice
            return hf_tokenizer(model_dir), where
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:  # what verl's hf_tokenizer does
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, "transformers.AutoTokenizer (+ pad = eos, as verl)"


def _vocab_sha(tokenizer):
    items = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode("utf-8")).hexdigest()


def _logits(model, ids, offset):
    import torch

    positions = torch.arange(len(ids)).unsqueeze(0) + offset
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), position_ids=positions, use_cache=False)
    return out.logits[0].float()


def describe(model_dir, messages, with_weights=True, use_verl=True):
    """Everything two interpreters must agree on for ``model_dir``; each part reports its own load error.

    ``use_verl`` False loads the tokenizer with transformers and verl's pad rule (tradelab's own process, where
    importing verl would only cost time).
    """
    import transformers

    result = {"python": sys.executable, "transformers": transformers.__version__}
    try:
        import tokenizers

        result["tokenizers"] = tokenizers.__version__
    except ImportError:
        result["tokenizers"] = None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_dir)
        major = int(transformers.__version__.split(".")[0])
        result["config"] = {
            "model_type": config.model_type, "vocab_size": config.vocab_size, "rope": _rope(config, major),
            "max_position_embeddings": getattr(config, "max_position_embeddings", None),
            "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
            "eos_token_id": getattr(config, "eos_token_id", None),
        }
    except Exception as exc:  # noqa: BLE001 - reported as a difference by the caller
        result["config_error"] = _error(exc)
        return result
    try:
        tokenizer, loader = _load_tokenizer(model_dir, use_verl)
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        result["tokenizer"] = {
            "loader": loader, "class": type(tokenizer).__name__, "len": len(tokenizer),
            "vocab_sha256": _vocab_sha(tokenizer), "eos_token": tokenizer.eos_token,
            "eos_token_id": tokenizer.eos_token_id, "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
            "special_tokens": sorted(str(t) for t in tokenizer.all_special_tokens),
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(), "prompt_ids": ids,
            "probe_text_ids": tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"],
            "think_end_ids": tokenizer.encode("</think>", add_special_tokens=False),
        }
    except Exception as exc:  # noqa: BLE001
        result["tokenizer_error"] = _error(exc)
        return result
    if not with_weights:
        return result
    try:
        import torch
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        except TypeError:  # transformers 4.x names it torch_dtype
            model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
        model.eval()
        ids = ids[-MAX_PROMPT_TOKENS:]
        near = _logits(model, ids, 0)
        limit = result["config"]["max_position_embeddings"] or 0
        offset = FAR_POSITION if limit >= FAR_POSITION + len(ids) else max(0, limit - len(ids))
        far = _logits(model, ids, offset)
        rotary = getattr(getattr(model, "model", None), "rotary_emb", None)
        inv_freq = getattr(rotary, "inv_freq", None)
        result["weights"] = {
            "class": type(model).__name__, "parameters": int(sum(p.numel() for p in model.parameters())),
            "embedding_rows": int(model.get_input_embeddings().weight.shape[0]),
            "prompt_tokens": len(ids), "far_offset": offset,
            "last_logits": [round(float(v), 6) for v in near[-1]],
            "far_last_logits": [round(float(v), 6) for v in far[-1]],
            "argmax": [int(v) for v in near.argmax(-1)], "far_argmax": [int(v) for v in far.argmax(-1)],
            "inv_freq": [float(v) for v in inv_freq] if inv_freq is not None else None,
            "attention_scaling": float(getattr(rotary, "attention_scaling", 1.0) or 1.0),
        }
    except Exception as exc:  # noqa: BLE001
        result["weights_error"] = _error(exc)
    return result


def _close(a, b, tolerance):
    if a is None or b is None:
        return a is b
    if len(a) != len(b):
        return False
    scale = max([1.0] + [abs(x) for x in a])
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0) <= tolerance * scale


def compare(reference, launch, tolerance=1e-3):
    """Every difference between two :func:`describe` results, one readable line each (empty = identical)."""
    problems = []
    for part in ("config", "tokenizer", "weights"):
        for side, found in (("tradelab", reference), ("launch interpreter", launch)):
            if f"{part}_error" in found:
                problems.append(f"{part} does not load under the {side} ({found.get('python')}, transformers "
                                f"{found.get('transformers')}): {found[f'{part}_error']}")
    if problems:
        return problems
    ref_c, got_c = reference["config"], launch["config"]
    for key in ("model_type", "vocab_size", "rope", "max_position_embeddings", "tie_word_embeddings",
                "eos_token_id"):
        if ref_c.get(key) != got_c.get(key):
            problems.append(f"config {key}: tradelab reads {ref_c.get(key)!r}, the launch interpreter reads "
                            f"{got_c.get(key)!r}")
    ref_t, got_t = reference["tokenizer"], launch["tokenizer"]
    for key in ("len", "vocab_sha256", "eos_token", "eos_token_id", "pad_token", "pad_token_id", "bos_token_id",
                "special_tokens", "prompt_sha256", "prompt_ids", "probe_text_ids"):
        if ref_t.get(key) != got_t.get(key):
            shown = (lambda v: f"{len(v)} ids starting {v[:8]}" if isinstance(v, list) and len(v) > 12 else repr(v))
            problems.append(f"tokenizer {key}: tradelab {shown(ref_t.get(key))}, launch interpreter "
                            f"{shown(got_t.get(key))}")
    ref_w, got_w = reference.get("weights"), launch.get("weights")
    if ref_w is None or got_w is None:
        return problems
    for key in ("class", "parameters", "embedding_rows", "prompt_tokens", "far_offset"):
        if ref_w.get(key) != got_w.get(key):
            problems.append(f"weights {key}: tradelab {ref_w.get(key)!r}, launch interpreter {got_w.get(key)!r}")
    for key, what in (("inv_freq", "RoPE inverse frequencies"), ("last_logits", "logits of the prompt's last token"),
                      ("far_last_logits", f"logits at positions from {ref_w.get('far_offset')}")):
        if not _close(ref_w.get(key), got_w.get(key), tolerance):
            problems.append(f"weights {what} differ beyond {tolerance:g} (relative)")
    if abs(ref_w["attention_scaling"] - got_w["attention_scaling"]) > 1e-6:
        problems.append(f"RoPE attention scaling: tradelab {ref_w['attention_scaling']}, launch interpreter "
                        f"{got_w['attention_scaling']}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="file the JSON result is written to")
    parser.add_argument("--model-dir", required=True, help="model folder to load")
    parser.add_argument("--messages", required=True, help="JSON file with the chat messages of the probe prompt")
    parser.add_argument("--no-weights", action="store_true", help="config and tokenizer only")
    args = parser.parse_args(argv)
    with open(args.messages, encoding="utf-8") as fh:
        messages = json.load(fh)
    result = describe(args.model_dir, messages, with_weights=not args.no_weights)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
