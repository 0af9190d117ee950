"""Preflight's proof that the launch interpreter reads the engine's model folder exactly as tradelab does.

:mod:`tradelab.grpo.artifact_probe` runs once in tradelab's process and once, as a script, under the plan's
interpreter (``runner.python``) with the plan's PYTHONPATH (the fork's ``verl-0.4.x`` first, so its own
``hf_tokenizer`` loads the tokenizer). The two results are compared field by field: RoPE theta and scaling, inverse
frequencies, vocabulary, eos / pad / bos ids, special tokens, the chat-templated prompt's ids and the logits of
that prompt at its own positions and at far positions (where RoPE scaling matters). Any difference fails the check
and is named.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from tradelab.grpo import artifact_probe
from tradelab.grpo.checks import FAIL, PASS, SKIP, WARN, Check
from tradelab.grpo.engines import base

PROBE_SCRIPT = Path(artifact_probe.__file__)
FALLBACK_MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You are a futures trading advisor."},
    {"role": "user", "content": "NQ 1m bar closed at 17012.25; ATR 11.5; flat. Allowed: HOLD, BUY, SELL."},
]


def probe_messages(val_parquet: Path) -> list[dict[str, str]]:
    """The first validation prompt (what the engine will template), else a fixed one."""
    if val_parquet.is_file():
        import pyarrow.parquet as pq

        rows = pq.read_table(val_parquet, columns=["prompt"]).slice(0, 1).to_pylist()
        if rows and rows[0]["prompt"]:
            return [{"role": m["role"], "content": m["content"]} for m in rows[0]["prompt"]]
    return list(FALLBACK_MESSAGES)


def launch_describe(plan: base.LaunchPlan, model_dir: Path, messages: list[dict[str, str]],
                    timeout_s: int, with_weights: bool = True) -> tuple[dict[str, Any] | None, str]:
    """:func:`artifact_probe.describe` under the plan's interpreter and environment; ``(result, error)``."""
    with tempfile.TemporaryDirectory(prefix="tradelab_artifact_") as tmp:
        msgs = Path(tmp) / "messages.json"
        msgs.write_text(json.dumps(messages), encoding="utf-8")
        args = ["--model-dir", str(model_dir), "--messages", str(msgs), *([] if with_weights else ["--no-weights"])]
        return plan.run_json(PROBE_SCRIPT, args, timeout_s=timeout_s, what="loading the model")


def parity_check(plan: base.LaunchPlan, model_dir: Path | None, messages: list[dict[str, str]], timeout_s: int,
                 reference_dir: Path | None = None, with_weights: bool = True,
                 fix: str = "") -> tuple[Check, dict[str, Any]]:
    """Compare what tradelab and the launch interpreter read from ``model_dir``.

    Args:
        plan: The launch plan (interpreter, environment, cwd).
        model_dir: The folder the engine loads.
        messages: Chat messages of the probe prompt.
        timeout_s: Time limit of the launch-side load.
        reference_dir: A folder tradelab's reading of ``model_dir`` must also agree with on config and tokenizer
            (the base model the merge started from), so a conversion that both interpreters misread is caught.
        with_weights: Also load the weights and compare RoPE frequencies and logits.
        fix: What to do about a difference (default: align the two interpreters' transformers).

    Returns:
        ``(check, details)``; details hold both sides' versions and the differences.
    """
    if model_dir is None or not (model_dir / "config.json").is_file():
        return Check("artifact_parity", SKIP, f"{model_dir}: no model folder to compare yet"), {}
    reference = artifact_probe.describe(str(model_dir), messages, with_weights=with_weights, use_verl=False)
    launch, error = launch_describe(plan, model_dir, messages, timeout_s, with_weights)
    if launch is None:
        return Check("artifact_parity", FAIL, f"cannot load {model_dir} under {plan.python}: {error}; the engine "
                     f"would fail the same way"), {}
    problems = artifact_probe.compare(reference, launch)
    if reference_dir is not None and (reference_dir / "config.json").is_file():
        origin = artifact_probe.describe(str(reference_dir), messages, with_weights=False, use_verl=False)
        for key in ("rope", "vocab_size", "max_position_embeddings"):
            if origin.get("config", {}).get(key) != reference.get("config", {}).get(key):
                problems.append(f"{model_dir.name} config {key} = {reference.get('config', {}).get(key)!r} but its "
                                f"base {reference_dir} has {origin.get('config', {}).get(key)!r}")
        for key in ("vocab_sha256", "eos_token_id", "pad_token_id", "prompt_ids"):
            if origin.get("tokenizer", {}).get(key) != reference.get("tokenizer", {}).get(key):
                problems.append(f"{model_dir.name} tokenizer {key} differs from its base {reference_dir}")
    details = {"model_dir": str(model_dir), "think_end_ids": (launch.get("tokenizer") or {}).get("think_end_ids"),
               "tradelab_transformers": reference.get("transformers"),
               "launch_transformers": launch.get("transformers"), "launch_python": launch.get("python"),
               "tokenizer_loader": (launch.get("tokenizer") or {}).get("loader"), "differences": problems}
    versions = (f"tradelab transformers {reference.get('transformers')} vs {plan.python} transformers "
                f"{launch.get('transformers')}")
    if problems:
        return Check("artifact_parity", FAIL, f"{model_dir} loads differently under the launch interpreter "
                     f"({versions}): " + "; ".join(problems) + "; "
                     + (fix or "align the two interpreters' transformers versions")), details
    config = reference["config"]
    weights = reference.get("weights") or {}
    return Check("artifact_parity", PASS, f"{model_dir.name} identical under both ({versions}): rope "
                 f"{config['rope']}, vocab {reference['tokenizer']['len']}, eos "
                 f"{reference['tokenizer']['eos_token_id']}, pad {reference['tokenizer']['pad_token_id']}, logits of a {weights.get('prompt_tokens')}-token "
                 f"prompt at positions 0 and {weights.get('far_offset')}"), details


def think_end_check(details: dict[str, Any]) -> Check | None:
    """The fork ends soft thinking at the last token of ``</think>``; that must be a token of its own.

    The soft-thinking sglang sets ``think_end_str_id = tokenizer.encode("</think>")[-1]``: when ``</think>`` splits
    into several tokens, every occurrence of its last piece (``>`` for most BPE vocabularies) ends soft mode.
    """
    ids = details.get("think_end_ids")
    if ids is None:
        return None
    if len(ids) == 1:
        return Check("think_end", PASS, f"</think> is one token ({ids[0]}): soft thinking ends exactly there")
    return Check("think_end", WARN, f"</think> encodes to {len(ids)} tokens {ids}; the fork ends soft thinking at "
                 f"any token {ids[-1]}, not only at </think>; add </think> as a token (a model trained with "
                 f"reasoning tags has it) or expect soft mode to end early")
