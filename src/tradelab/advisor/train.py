"""Supervised LoRA training of the advisor (Stage 1 refinement and the teacher warm start) and adapter merging.

The loss covers response tokens only: prompt tokens get label -100. Each example carries a weight (its loss is
multiplied by it; the batch loss is the mean of the weighted example losses), gradients are clipped, the optimiser
is AdamW, and every source of randomness is seeded. Adapters are saved in PEFT format (``adapter_config.json`` +
``adapter_model.safetensors``) plus ``tradelab_adapter.json`` (origin and training summary).

An optimiser batch runs as micro-batches of ``llm.sft.micro_batch_size`` examples whose gradients add up to the
batch's (activation memory grows with the micro-batch, not the batch), and the tokens every example of a micro-batch
starts with (the system turn) run once for all of them (``llm.sft.shared_prefix``, :func:`shared_prefix_length`).
On a CPU the passes may run under bfloat16 autocast with the frozen base loaded in bfloat16 (``llm.sft.cpu_autocast``,
:func:`training_autocast`); the adapter's own weights stay float32.

Answers end with the model's end-of-turn token (the one its chat template closes a turn with, e.g. ``<|im_end|>``,
``<end_of_turn>``), which is what generation stops on. Output logits are computed only at response positions,
``llm.sft.loss_chunk_tokens`` at a time and recomputed in the backward pass
(:func:`tradelab.advisor.loss.response_loss`): full-vocabulary
float32 logits over every prompt position would cost batch x sequence x vocabulary x 4 bytes (1.5 GB for 16 prompts
of 160 tokens on a 152k vocabulary), several times over with their gradients. LoRA targets are resolved for the
architecture (:func:`tradelab.advisor.arch.resolve_lora_targets`) and the adapted modules are recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.advisor.loss import IGNORE_INDEX, response_loss, shared_prefix_length
from tradelab.advisor.prompts import build_messages, render_chat
from tradelab.errors import ConfigError
from tradelab.threads import torch_threads

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig

log = logging.getLogger(__name__)

ADAPTER_INFO = "tradelab_adapter.json"
"""Training summary and origin written next to the PEFT files."""


@dataclass(frozen=True)
class SFTExample:
    """One supervised example.

    Attributes:
        messages: The chat messages (system + user) the answer responds to.
        target: The answer text the model should produce (EOS is appended automatically).
        weight: Non-negative loss weight.
    """

    messages: list[dict[str, str]]
    target: str
    weight: float = 1.0


@dataclass
class TrainSummary:
    """What a training call did (also saved to ``tradelab_adapter.json``).

    ``peak_memory_mb`` is measured over the training loop (:class:`tradelab.advisor.memory.PeakMemory`, of kind
    ``peak_memory_kind``); ``adapted_modules`` counts the modules that carry the adapter by name; ``answer_end_token``
    is the token every target ends with.
    """

    examples: int
    epochs: int
    steps: int
    seconds: float
    epoch_loss: list[float] = field(default_factory=list)
    peak_memory_mb: float = 0.0
    peak_memory_kind: str = ""
    target_modules: list[str] | str = field(default_factory=list)
    adapted_modules: dict[str, int] = field(default_factory=dict)
    answer_end_token: str = ""


def encode_example(tokenizer: Any, example: SFTExample, max_seq_len: int, *,
                   end_token_id: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels for one example: the chat prompt (labels -100) followed by the target and the
    end-of-turn token.

    The prompt and the answer are tokenised separately, exactly as at generation time (prompt first, then the
    generated tokens). A too-long prompt loses its start; the answer is kept whole.

    Args:
        tokenizer: The model's tokenizer (with its chat template).
        example: Messages, target and weight.
        max_seq_len: Longest prompt + answer in tokens.
        end_token_id: Id the answer ends with; default :func:`tradelab.advisor.arch.answer_end_id`.
    """
    if end_token_id is None:
        from tradelab.advisor.arch import answer_end_id

        end_token_id = answer_end_id(tokenizer)
    prompt_ids = tokenizer(render_chat(tokenizer, example.messages), add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [end_token_id]
    target_ids = target_ids[:max_seq_len]
    room = max_seq_len - len(target_ids)
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - room):] if room > 0 else []
    return prompt_ids + target_ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids


def collate(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors (padding labelled -100)."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _peft_model(base: Any, config: TradelabConfig, init_adapter: str | Path | None) -> Any:
    """The trainable PEFT model: ``init_adapter`` continued, or a fresh adapter on the resolved target modules.

    Raises:
        ConfigError: ``llm.lora.target_modules`` names a module this architecture does not have.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    from tradelab.advisor.arch import resolve_lora_targets

    if init_adapter is not None:
        return PeftModel.from_pretrained(base, Path(init_adapter), is_trainable=True)
    lora = config.llm.lora
    targets = resolve_lora_targets(base, lora.target_modules)
    return get_peft_model(base, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                           target_modules=targets, task_type="CAUSAL_LM"))


def _validate(examples: Sequence[SFTExample]) -> None:
    if not examples:
        raise ConfigError("train_adapter: no examples to train on; collect experience or run the warm start first")
    bad = [i for i, e in enumerate(examples) if not (e.weight >= 0.0)]
    if bad:
        raise ConfigError(
            f"train_adapter: example {bad[0]} has weight {examples[bad[0]].weight!r}; weights must be >= 0"
        )


def _run_epochs(model: Any, batches: Callable[[int], list[list[int]]], encoded: list, weights: list[float],
                config: TradelabConfig, *, pad_id: int, epochs: int, learning_rate: float, device: str,
                progress: Callable[[int, int], None] | None, autocast: Any) -> TrainSummary:
    import torch

    from tradelab.advisor.memory import PeakMemory

    sft = config.llm.sft
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=learning_rate, weight_decay=sft.weight_decay)
    summary = TrainSummary(examples=len(encoded), epochs=epochs, steps=0, seconds=0.0)
    total = epochs * len(batches(0))
    started = time.perf_counter()
    model.train()
    threads = sft.cpu_threads if str(device).startswith("cpu") else 0
    with PeakMemory(device) as memory, torch_threads(threads):
        _epochs(model, batches, encoded, weights, sft, optimiser, params, summary, pad_id=pad_id, epochs=epochs,
                device=device, total=total, progress=progress, autocast=autocast)
    model.eval()
    summary.peak_memory_mb, summary.peak_memory_kind = memory.peak_mb, memory.kind
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def training_autocast(config: TradelabConfig, device: str) -> Any:
    """The context training's forward passes run in: bfloat16 autocast on a CPU when ``llm.sft.cpu_autocast``
    resolves to it and the CPU multiplies bfloat16 natively (explicit ``bfloat16`` also without), else nothing."""
    import contextlib

    import torch

    llm = config.llm
    if not str(device).startswith("cpu") or not llm.sft_cpu_bfloat16:
        return contextlib.nullcontext()
    if llm.sft.cpu_autocast == "auto" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _epochs(model: Any, batches: Callable[[int], list[list[int]]], encoded: list, weights: list[float], sft: Any,
            optimiser: Any, params: list, summary: TrainSummary, *, pad_id: int, epochs: int, device: str,
            total: int, progress: Callable[[int, int], None] | None, autocast: Any = None) -> None:
    import contextlib

    import torch

    autocast = autocast if autocast is not None else contextlib.nullcontext()
    for epoch in range(epochs):
        losses = []
        for index in batches(epoch):
            optimiser.zero_grad(set_to_none=True)
            batch_loss = 0.0
            for start in range(0, len(index), sft.micro_batch_size):
                part = [encoded[i] for i in index[start:start + sft.micro_batch_size]]
                micro = {k: v.to(device) for k, v in collate(part, pad_id=pad_id).items()}
                w = torch.tensor([weights[i] for i in index[start:start + sft.micro_batch_size]],
                                 dtype=torch.float32, device=device)
                prefix = shared_prefix_length(part) if sft.shared_prefix else 0
                with autocast:
                    loss = response_loss(model, micro["input_ids"], micro["attention_mask"], micro["labels"], w,
                                         sft.loss_chunk_tokens, prefix_tokens=prefix, batch_rows=len(index))
                loss.backward()
                batch_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, sft.grad_clip_norm)
            optimiser.step()
            losses.append(batch_loss)
            summary.steps += 1
            if progress is not None:
                progress(summary.steps, total)
        summary.epoch_loss.append(sum(losses) / len(losses))
        log.info("adapter training epoch %d/%d loss %.4f", epoch + 1, epochs, summary.epoch_loss[-1])


def train_adapter(
    base_dir: str | Path,
    examples: Sequence[SFTExample],
    config: TradelabConfig,
    *,
    out_dir: str | Path,
    seed: int,
    init_adapter: str | Path | None = None,
    epochs: int | None = None,
    learning_rate: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train a LoRA adapter on ``examples`` and save it (PEFT format) to ``out_dir``.

    Args:
        base_dir: Base model directory (already resolved, e.g. by :func:`tradelab.advisor.load.resolve_model_dir`).
        examples: Prompt messages, target answers and weights.
        config: The whole config (``llm.lora``, ``llm.sft``, dtype/device).
        out_dir: Adapter folder; replaced atomically if it exists.
        seed: Seeds torch and the batch order.
        init_adapter: Continue training this adapter instead of starting a fresh one.
        epochs: Override ``llm.sft.epochs``.
        learning_rate: Override ``llm.sft.learning_rate``.
        progress: Called with ``(step, total_steps)`` after each optimiser step.

    Returns:
        ``out_dir``.
    """
    import numpy as np
    import torch

    from tradelab.advisor.arch import adapted_modules, answer_end_id
    from tradelab.advisor.load import load_base_model, load_tokenizer, resolve_device

    _validate(examples)
    sft, llm = config.llm.sft, config.llm
    torch.manual_seed(seed)
    device = resolve_device(llm.device)
    tokenizer = load_tokenizer(base_dir, trust_remote_code=llm.trust_remote_code)
    autocast = training_autocast(config, device)
    if isinstance(autocast, torch.autocast):  # the frozen weights in bfloat16: half the memory, no cast per op
        llm = llm.model_copy(update={"dtype": "bfloat16"})
    base, _ = load_base_model(Path(base_dir), llm, device)
    model = _peft_model(base, config, init_adapter)
    end_id = answer_end_id(tokenizer)
    encoded = [encode_example(tokenizer, e, sft.max_seq_len, end_token_id=end_id) for e in examples]
    weights = [float(e.weight) for e in examples]
    order_rng = np.random.default_rng(seed)
    orders = [order_rng.permutation(len(encoded)) for _ in range(epochs or sft.epochs)]

    def batches(epoch: int) -> list[list[int]]:
        order = orders[epoch]
        return [order[i:i + sft.batch_size].tolist() for i in range(0, len(order), sft.batch_size)]

    summary = _run_epochs(model, batches, encoded, weights, config, pad_id=tokenizer.pad_token_id,
                          epochs=epochs or sft.epochs, learning_rate=learning_rate or sft.learning_rate,
                          device=device, progress=progress, autocast=autocast)
    target_modules = model.peft_config[model.active_adapter].target_modules
    summary.target_modules = target_modules if isinstance(target_modules, str) else sorted(target_modules)
    summary.adapted_modules = adapted_modules(model)
    summary.answer_end_token = tokenizer.convert_ids_to_tokens(end_id)
    log.info("adapter on %s (%d modules), answers end with %s, training peak memory %.0f MB (%s)",
             summary.adapted_modules, sum(summary.adapted_modules.values()), summary.answer_end_token,
             summary.peak_memory_mb, summary.peak_memory_kind)
    return _save(model, Path(out_dir), Path(base_dir), config, seed, summary, init_adapter)


def _save(model: Any, out_dir: Path, base_dir: Path, config: TradelabConfig, seed: int, summary: TrainSummary,
          init_adapter: str | Path | None) -> Path:
    from dataclasses import asdict

    from tradelab.advisor.bases import model_info
    from tradelab.config import config_hash
    from tradelab.fileio import atomic_write_json, staged_dir
    from tradelab.provenance import origin

    with staged_dir(out_dir) as staging:
        model.save_pretrained(staging)
        atomic_write_json(staging / ADAPTER_INFO, {
            "base_model": model_info(base_dir), "init_adapter": str(init_adapter) if init_adapter else None,
            "lora": config.llm.lora.model_dump(), "training": asdict(summary),
            "origin": origin(config_hash(config), seed),
        })
    log.info("saved adapter to %s (%d steps, final loss %.4f)", out_dir, summary.steps, summary.epoch_loss[-1])
    return out_dir


def read_training_summary(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``training`` section of an adapter's ``tradelab_adapter.json`` ({} when the file or section is absent)."""
    import json

    path = Path(adapter_dir) / ADAPTER_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    training = info.get("training") if isinstance(info, dict) else None
    return training if isinstance(training, dict) else {}


def adapter_base_matches(adapter_dir: str | Path, root: str | Path, config: TradelabConfig) -> bool:
    """Whether the adapter's ``tradelab_adapter.json`` records the base ``config`` runs (by sha256, else by name when
    the adapter predates the sha256). An adapter without the file is taken as it is."""
    import json

    from tradelab.advisor.bases import model_info
    from tradelab.advisor.load import resolve_model_dir

    try:
        recorded = json.loads((Path(adapter_dir) / ADAPTER_INFO).read_text(encoding="utf-8")).get("base_model")
    except (OSError, ValueError, AttributeError):
        return True
    if not isinstance(recorded, dict):
        return True
    current = model_info(resolve_model_dir(config.llm.base_model, root, config))
    if recorded.get("sha256"):
        return recorded["sha256"] == current["sha256"]
    return recorded.get("name") == current["name"]


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path, *,
                  trust_remote_code: bool = False) -> Path:
    """Merge a LoRA adapter into its base (``merge_and_unload``) and save the full model and tokenizer.

    Loaded on CPU in the checkpoint's own dtype. ``out_dir`` is replaced atomically if it exists.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tradelab.advisor.load import load_tokenizer
    from tradelab.fileio import staged_dir

    out = Path(out_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", local_files_only=True,
                                                trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(base, Path(adapter_dir)).merge_and_unload()
    tokenizer = load_tokenizer(base_dir, trust_remote_code=trust_remote_code)
    with staged_dir(out) as staging:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out


def teacher_examples(config: TradelabConfig, n_examples: int, seed: int) -> list[SFTExample]:
    """``n_examples`` synthetic contexts with the rule-based teacher's answers as targets (weight 1)."""
    from tradelab.advisor.synth import random_contexts
    from tradelab.advisor.teacher import teacher_response

    return [SFTExample(build_messages(c, config), teacher_response(c)) for c in random_contexts(n_examples, seed)]


def warm_start(root: str | Path, config: TradelabConfig, *, seed: int, out_dir: str | Path,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Teach a fresh base model the answer format: SFT of a new adapter on teacher answers for synthetic contexts.

    Args:
        root: Workspace root (``llm.model`` is resolved here; the tiny advisor is built if it is the default).
        config: The whole config (:attr:`tradelab.config.llm_schema.LLMConfig.warm_start_run` sizes the run).
        seed: Training seed.
        out_dir: Adapter folder to write.
        progress: Called with ``(step, total_steps)``.

    Returns:
        ``out_dir``.
    """
    from tradelab.advisor.load import resolve_model_dir

    warm = config.llm.warm_start_run
    base_dir = resolve_model_dir(config.llm.base_model, root, config)
    examples = teacher_examples(config, warm.n_examples, warm.seed)
    return train_adapter(base_dir, examples, config, out_dir=out_dir, seed=seed, epochs=warm.epochs,
                         learning_rate=warm.learning_rate, progress=progress)


def fresh_adapter(base_dir: str | Path, config: TradelabConfig, *, out_dir: str | Path, seed: int) -> Path:
    """A new, untrained LoRA adapter on ``base_dir`` (``lora_B`` is zero, so the model answers as the base does).

    Stage 1 starts from one when Stage 2 handed back a whole model (the SofT-GRPO fork trains every weight): the new
    base keeps what Stage 2 taught, and Stage 1's refinements train the adapter on top of it.

    Returns:
        ``out_dir`` (replaced atomically if it exists).
    """
    import torch

    from tradelab.advisor.load import load_base_model
    from tradelab.advisor.bases import model_info
    from tradelab.config import config_hash
    from tradelab.fileio import atomic_write_json, staged_dir
    from tradelab.provenance import origin

    torch.manual_seed(seed)
    base, _ = load_base_model(Path(base_dir), config.llm, "cpu")
    model = _peft_model(base, config, None)
    with staged_dir(Path(out_dir)) as staging:
        model.save_pretrained(staging)
        atomic_write_json(staging / ADAPTER_INFO, {
            "base_model": model_info(base_dir), "init_adapter": None, "lora": config.llm.lora.model_dump(),
            "training": None, "origin": origin(config_hash(config), seed),
        })
    log.info("fresh adapter on %s saved to %s", base_dir, out_dir)
    return Path(out_dir)
