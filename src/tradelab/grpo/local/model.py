"""The policy for the local engine: base model + trainable LoRA adapter, tokenizer and special ids.

The reference policy is the same model with the adapter disabled (``PeftModel.disable_adapter()``), so no second
copy of the weights is held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradelab.config import TradelabConfig
from tradelab.errors import ConfigError, MissingDependency, StageNotReady
from tradelab.grpo.local.rollout import StopSpec
from tradelab.manifest import load_manifest, stage1_of
from tradelab.paths import Workspace

log = logging.getLogger(__name__)


@dataclass
class Policy:
    """A loaded trainable policy.

    Attributes:
        model: ``PeftModel`` with a trainable adapter, in eval mode (no dropout, so scores are repeatable).
        tokenizer: Its tokenizer.
        device: Torch device string.
        base_path: Base model directory.
        adapter_path: The adapter the run started from.
    """

    model: Any
    tokenizer: Any
    device: str
    base_path: Path
    adapter_path: Path


def resolve_sources(root: str | Path, market: str, config: TradelabConfig) -> tuple[Path, Path]:
    """The base model directory and the Stage 1 adapter to refine.

    The manifest's ``stage1.base_model.local_path`` / ``stage1.lora_adapter_path`` win; otherwise ``llm.model``
    (resolved by :func:`tradelab.advisor.load.resolve_model_dir`) and the workspace's ``stage1_lora/``.

    Raises:
        MissingDependency: The base model cannot be found.
        StageNotReady: No Stage 1 adapter is found.
    """
    from tradelab.advisor.load import resolve_model_dir

    ws = Workspace.at(root)
    stage1 = stage1_of(load_manifest(root, market))
    recorded = stage1.base_model.local_path if stage1 is not None and stage1.base_model is not None else None
    base = resolve_model_dir(str(recorded or config.llm.base_model), ws.root, config)
    adapter = Path((stage1.lora_adapter_path if stage1 is not None else None) or ws.stage1_lora_dir(market))
    adapter = adapter if adapter.is_absolute() else ws.root / adapter
    if not (adapter / "adapter_config.json").is_file():
        raise StageNotReady(
            f"{adapter}: no Stage 1 LoRA adapter (adapter_config.json) found; run "
            f"`python main.py stage1 --market {market} --test` first"
        )
    return base, adapter


def load_policy(base: Path, adapter: Path, config: TradelabConfig, *, device: str) -> Policy:
    """Load the base model (``llm`` settings: dtype, quantisation) and attach ``adapter`` as a trainable LoRA.

    Raises:
        MissingDependency: The model or adapter cannot be loaded.
    """
    from peft import PeftModel

    from tradelab.advisor.load import load_base_model, load_tokenizer, resolve_device

    resolved = resolve_device(device)
    tokenizer = load_tokenizer(base, trust_remote_code=config.llm.trust_remote_code)
    model, _ = load_base_model(base, config.llm, resolved)
    try:
        model = PeftModel.from_pretrained(model, adapter, is_trainable=True)
    except (OSError, ValueError) as exc:
        raise MissingDependency(f"{adapter}: cannot load the adapter onto {base} ({exc})") from None
    model.eval()
    return Policy(model=model, tokenizer=tokenizer, device=resolved, base_path=base, adapter_path=adapter)


def stop_spec(tokenizer: Any, model: Any, soft: Any, max_new_tokens: int) -> StopSpec:
    """Pad id, stop ids (EOS, the model's generation EOS ids and the chat template's end-of-turn token, as the
    advisor stops on: :func:`tradelab.advisor.arch.stop_token_ids`) and the think markers' ids.

    Args:
        tokenizer: The policy's tokenizer.
        model: The policy (its ``generation_config.eos_token_id`` adds stop ids).
        soft: ``grpo_local.soft`` (think_start_marker, think_end_marker).
        max_new_tokens: Cap on answer length.

    Raises:
        ConfigError: The think-end marker tokenises to nothing, or the model has no EOS id.
    """
    from tradelab.advisor.arch import stop_token_ids

    stop = set(stop_token_ids(tokenizer, getattr(model, "generation_config", None)))
    if not stop:
        raise ConfigError(f"{getattr(tokenizer, 'name_or_path', 'tokenizer')}: no EOS token id; the model cannot stop")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop)
    end = tuple(tokenizer(soft.think_end_marker, add_special_tokens=False)["input_ids"])
    if not end:
        raise ConfigError(
            f"config/grpo_local.yaml: soft.think_end_marker = {soft.think_end_marker!r} tokenises to nothing; "
            f"use the model's think-end text (e.g. '</think>')"
        )
    start: tuple[int, ...] = ()
    if soft.think_start_marker:
        start = tuple(tokenizer(soft.think_start_marker, add_special_tokens=False)["input_ids"])
    return StopSpec(pad_id=int(pad), stop_ids=frozenset(stop), think_end_ids=end, max_new_tokens=max_new_tokens,
                    think_start_ids=start)


def trainable_parameters(model: Any) -> list[Any]:
    """The adapter's trainable parameters, in a stable order (optimizer state depends on it)."""
    return [p for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]) if p.requires_grad]
