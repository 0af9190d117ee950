"""GGUF files: checked before anything is written, then dequantised once into an ordinary transformers folder.

Most people keep small models as ``.gguf`` files (llama.cpp's format). transformers reads them (``from_pretrained(...,
gguf_file=...)``) for the architectures it knows, dequantising every tensor to float32; :func:`convert_gguf` does that
once and saves the result with ``save_pretrained``, so every later load is a plain folder load, under transformers 5
and under the fork's 4.51 alike.

Before converting, :func:`inspect_gguf` reads the header and the tensor table with the ``gguf`` package and checks
that every tensor's data lies inside the file: a file that is not GGUF, one cut short by an interrupted copy, and
an architecture transformers cannot dequantise each stop with one line naming the file and what to do.

The GGUF tokenizer converter of transformers 5.10 takes the end-of-sequence token from the wrong field (SmolLM2's
comes out as ``<|im_start|>``, id 1, where the file says id 2, ``<|im_end|>``); the special tokens are therefore set
from the file's own ``tokenizer.ggml.*_token_id`` entries after loading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab.errors import DataError, MissingDependency

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
"""The first four bytes of every GGUF file."""
SPECIAL_TOKEN_FIELDS: dict[str, str] = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
}
"""Tokenizer attribute -> the GGUF metadata key holding its id."""


@dataclass(frozen=True)
class GGUFInfo:
    """What the file says about itself.

    Attributes:
        path: The file.
        version: GGUF format version.
        architecture: ``general.architecture`` (``llama``, ``qwen2``, ...).
        name: ``general.name`` or the file stem.
        tensors: Number of tensors.
        quantizations: The tensor types present (``Q4_1``, ``Q8_0``, ``F32``, ...).
        special_token_ids: ``bos_token``/``eos_token``/``pad_token``/``unk_token`` -> id, as far as the file has them.
        has_chat_template: Whether the file carries ``tokenizer.chat_template``.
        size_bytes: File size.
    """

    path: Path
    version: int
    architecture: str
    name: str
    tensors: int
    quantizations: list[str]
    special_token_ids: dict[str, int] = field(default_factory=dict)
    has_chat_template: bool = False
    size_bytes: int = 0


def _field(reader: Any, key: str) -> Any:
    item = reader.fields.get(key)
    return None if item is None else item.contents()


def _require_gguf_package(path: Path) -> Any:
    try:
        import gguf
    except ImportError:
        raise MissingDependency(
            f"{path}: reading a .gguf file needs the gguf package; `pip install gguf==0.19.0` (see requirements.txt)"
        ) from None
    return gguf


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF file's header and tensor table, checking that it is whole.

    Raises:
        DataError: Not a file, not GGUF (wrong magic), unreadable or truncated (a tensor's data runs past the end).
        MissingDependency: The ``gguf`` package is not installed.
    """
    path = Path(path)
    fix = "copy or download the file again (it may be cut short), or point llm.model at another model"
    if not path.is_file():
        raise DataError(f"{path}: no such .gguf file; check llm.model in config/llm.yaml")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); check the file's permissions") from None
    if magic != GGUF_MAGIC:
        raise DataError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF'); point llm.model at a "
                        ".gguf model file, a model folder or a named base such as smollm2-135m-instruct")
    gguf = _require_gguf_package(path)
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, OSError, EOFError) as exc:
        raise DataError(f"{path}: a damaged or truncated GGUF file ({size:,} bytes; the reader says: "
                        f"{' '.join(str(exc).split())}); {fix}") from None
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise DataError(f"{path}: truncated GGUF file: its tensors need {end:,} bytes, the file has {size:,}; {fix}")
    architecture = _field(reader, "general.architecture")
    if not architecture:
        raise DataError(f"{path}: the GGUF file names no general.architecture; {fix}")
    special = {attr: int(value) for attr, key in SPECIAL_TOKEN_FIELDS.items()
               if (value := _field(reader, key)) is not None}
    return GGUFInfo(
        path=path, version=int(_field(reader, "GGUF.version") or 0), architecture=str(architecture),
        name=str(_field(reader, "general.name") or path.stem), tensors=len(reader.tensors),
        quantizations=sorted({t.tensor_type.name for t in reader.tensors}), special_token_ids=special,
        has_chat_template=_field(reader, "tokenizer.chat_template") is not None, size_bytes=size,
    )


def supported_architectures() -> list[str]:
    """The GGUF architectures the installed transformers can dequantise."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(GGUF_SUPPORTED_ARCHITECTURES)


def _check_supported(info: GGUFInfo) -> None:
    import transformers

    supported = supported_architectures()
    if info.architecture not in supported:
        raise DataError(
            f"{info.path}: GGUF architecture {info.architecture!r} cannot be dequantised by transformers "
            f"{transformers.__version__} (it reads {', '.join(supported)}); convert the model to a transformers "
            "folder elsewhere and point llm.model at that folder"
        )


def _fix_special_tokens(tokenizer: Any, info: GGUFInfo) -> dict[str, str]:
    """Set the tokenizer's bos/eos/pad/unk tokens to the ids the file names; returns what was set."""
    chosen: dict[str, str] = {}
    vocab = len(tokenizer)
    for attr, token_id in info.special_token_ids.items():
        if 0 <= token_id < vocab:
            token = tokenizer.convert_ids_to_tokens(token_id)
            setattr(tokenizer, attr, token)
            chosen[attr] = token
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        chosen["pad_token"] = tokenizer.eos_token
    return chosen


def _quiet_tqdm(*args: Any, **kwargs: Any) -> Any:
    """transformers' GGUF loader draws a plain tqdm bar; library code does not print."""
    from tqdm.auto import tqdm

    return tqdm(*args, **{**kwargs, "disable": True})


def load_gguf(info: GGUFInfo) -> tuple[Any, Any]:
    """``(model, tokenizer)`` dequantised to float32 from the file, special tokens as the file names them.

    Raises:
        DataError: transformers cannot read the file (the message names it and the reason).
    """
    from unittest import mock

    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    _check_supported(info)
    hf_logging.disable_progress_bar()
    kwargs = {"gguf_file": info.path.name, "local_files_only": True}
    try:
        with mock.patch.object(gguf_utils, "tqdm", _quiet_tqdm):
            tokenizer = AutoTokenizer.from_pretrained(info.path.parent, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(info.path.parent, dtype=torch.float32, **kwargs)
    except (ValueError, KeyError, RuntimeError, TypeError, NotImplementedError, OSError) as exc:
        raise DataError(f"{info.path}: transformers cannot convert this GGUF file "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); point llm.model at a "
                        "transformers model folder instead") from None
    _fix_special_tokens(tokenizer, info)
    # The GGUF converter switches on the WordPiece clean-up, which strips spaces before punctuation in decoded BPE
    # text (and makes transformers warn on every load); the models GGUF files hold are byte-level BPE.
    tokenizer.clean_up_tokenization_spaces = False
    generation = model.generation_config
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, attr)
        if value is not None:
            setattr(generation, attr, int(value))
            setattr(model.config, attr, int(value))
    generation.do_sample = False
    return model, tokenizer


def convert_gguf(info: GGUFInfo, staging: str | Path) -> dict[str, Any]:
    """Dequantise the file into ``staging`` (model, tokenizer, chat template); returns what the marker records
    about the result (architecture, parameter count, special tokens, dtype).

    The caller owns ``staging`` (a :func:`tradelab.fileio.staged_dir` folder), so a failure leaves nothing behind.
    """
    model, tokenizer = load_gguf(info)
    staging = Path(staging)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    return {
        "architecture": info.architecture,
        "model_type": model.config.model_type,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "dtype": "float32",
        "special_tokens": {attr: getattr(tokenizer, attr) for attr in SPECIAL_TOKEN_FIELDS},
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "gguf": {"version": info.version, "name": info.name, "tensors": info.tensors,
                 "quantizations": info.quantizations},
    }
