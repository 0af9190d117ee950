"""What an engine run leaves behind, found and verified before the run is recorded "completed".

- verl (PyPI): a LoRA adapter exported by ``verl.model_merger`` (``lora_adapter/``).
- soft-grpo (fork): full weights; with ``hf_model`` in ``actor.checkpoint.contents`` each checkpoint holds a
  Hugging Face model under ``checkpoints/global_step_<N>/actor/huggingface/`` (the rest are sharded FSDP files that
  neither evaluation nor Stage 1 can load).

Verification loads what can be loaded without the model's memory: the config and tokenizer with transformers, the
adapter config with PEFT, and every tensor name and shape from the safetensors headers, checked against a model
built on the meta device from the config (or, for an adapter, against its rank).
"""

from __future__ import annotations

from pathlib import Path

HF_MODEL_DIR = "huggingface"


def fork_hf_model_dir(output_dir: Path, since_epoch_s: float | None = None) -> Path | None:
    """The newest ``checkpoints/global_step_<N>/actor/huggingface`` holding a ``config.json``, or None.

    Args:
        output_dir: The engine's output folder.
        since_epoch_s: Ignore folders whose config was written before this time (an earlier run's checkpoint).
    """
    found = []
    for step_dir in output_dir.glob("checkpoints/global_step_*"):
        step = step_dir.name.removeprefix("global_step_")
        candidate = step_dir / "actor" / HF_MODEL_DIR
        config = candidate / "config.json"
        if since_epoch_s is not None and config.is_file() and config.stat().st_mtime < since_epoch_s:
            continue
        if step.isdigit() and config.is_file():
            found.append((int(step), candidate))
    return max(found)[1] if found else None


def _safetensors_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def verify_hf_model(folder: Path) -> str | None:
    """None when ``folder`` is a loadable causal LM (config, tokenizer, every weight present with its shape)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not (folder / "config.json").is_file():
        return f"{folder}: no config.json"
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        return f"{folder}: config or tokenizer does not load: {exc}"
    shapes = _safetensors_shapes(folder)
    if not shapes:
        return f"{folder}: no *.safetensors weights"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    missing = sorted(set(expected) - set(shapes))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or wrong:
        return (f"{folder}: weights do not match its config: {len(missing)} missing (e.g. {missing[:3]}), "
                f"{len(wrong)} with other shapes (e.g. {wrong[:3]})")
    return None


def verify_adapter(folder: Path) -> str | None:
    """None when ``folder`` is a loadable LoRA adapter: PEFT reads its config and its tensors have rank ``r``."""
    from peft import PeftConfig

    if not (folder / "adapter_config.json").is_file():
        return f"{folder}: no adapter_config.json"
    try:
        config = PeftConfig.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        return f"{folder}/adapter_config.json does not load with PEFT: {exc}"
    try:
        shapes = _safetensors_shapes(folder)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a corrupt header
        return f"{folder}: adapter weights do not load: {exc}"
    lora_a = {k: v for k, v in shapes.items() if "lora_A" in k}
    if not lora_a or not any("lora_B" in k for k in shapes):
        return f"{folder}: no lora_A / lora_B tensors in adapter_model.safetensors"
    rank = getattr(config, "r", None)
    bad = [k for k, v in lora_a.items() if v[0] != rank]
    if bad:
        return f"{folder}: {len(bad)} lora_A tensors do not have rank r={rank} (e.g. {bad[0]} {lora_a[bad[0]]})"
    return None
