"""``config/llm.yaml``: the advisor model, generation, prompt templates, LoRA adapter training and the tiny model."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tradelab.config.base import StrictModel

PROMPT_PLACEHOLDERS: tuple[str, ...] = (
    "market", "time", "close", "atr", "trend", "momentum", "volatility", "vwap_distance_atr", "return_5_bars_pct",
    "return_30_bars_pct", "return_5_bars_bp", "return_30_bars_bp", "minutes_to_close", "position", "position_atr",
    "side", "entry_price", "stop", "target", "trail", "unrealized_pnl_usd", "bars_in_trade", "balance_usd",
    "drawdown_buffer_usd", "consecutive_losses", "win_rate", "daily_pnl_usd", "recent_trades", "allowed_actions",
)
"""Names a user template may use in ``{braces}``; each is rendered from the market context at the decision bar."""

DEFAULT_MODEL = "default"
"""The ``llm.model`` value that stands for the profile's ``llm.default_model``."""
TINY_ADVISOR_MODEL = "models/base/tiny-advisor"
"""The embedded smoke-test advisor's folder, relative to the workspace root."""


class GenerationConfig(StrictModel):
    """How the advisor decodes and batches."""

    max_new_tokens: int = Field(ge=1, le=4096, description="Cap on generated tokens per answer.")
    do_sample: bool = Field(description="false: greedy decoding (deterministic); true: sample with the settings below.")
    temperature: float = Field(gt=0, le=5, description="Sampling temperature (used when do_sample is true).")
    top_p: float = Field(gt=0, le=1, description="Nucleus sampling mass (used when do_sample is true).")
    top_k: int = Field(ge=0, description="Top-k sampling cut; 0 disables it (used when do_sample is true).")
    batch_size: int = Field(ge=1, le=1024, description="Most prompts per left-padded generate call.")
    prefix_cache: bool = Field(
        description="Run the system turn every prompt shares through the model once and reuse its keys/values."
    )
    cache: bool = Field(description="Reuse answers for contexts that discretise to the same key (same adapter).")
    cache_max_entries: int = Field(ge=1, description="Least recently used answers are dropped beyond this many.")
    cpu_threads: int = Field(
        ge=0, description="Torch CPU threads for each generate call on a CPU device (restored after); 0 keeps the "
        "process setting."
    )
    cpu_quantization: Literal["auto", "none", "int8"] = Field(
        description="On a CPU device, generate with an int8 dynamically quantized copy of the merged model (int8) "
        "or with the float weights (none); auto = int8 for every base but the embedded tiny advisor."
    )


class PromptConfig(StrictModel):
    """The system message and the user-message templates (``{name}`` placeholders, see PROMPT_PLACEHOLDERS)."""

    system: str = Field(min_length=1, description="System message: the role and the one-line answer contract.")
    style: Literal["auto", "full", "compact"] = Field(
        description="Which user template renders prompts: auto = compact for every base but the embedded tiny "
        "advisor (whose tokenizer was trained on the full template), else the one named."
    )
    user_template: str = Field(min_length=1, description="The full user message template with named {placeholders}.")
    compact_user_template: str = Field(
        min_length=1, description="The compact user message template: fewer fields and digits for real tokenizers."
    )

    @field_validator("user_template", "compact_user_template")
    @classmethod
    def _known_placeholders(cls, v: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); write literal braces as {{{{ and }}}}") from None
        unknown = sorted(names - set(PROMPT_PLACEHOLDERS))
        if unknown:
            raise ValueError(f"unknown placeholders {unknown}; allowed: {', '.join(PROMPT_PLACEHOLDERS)}")
        if "allowed_actions" not in names:
            raise ValueError("the template must show {allowed_actions} so the advisor can respect the mask")
        return v


class LoraConfig(StrictModel):
    """The LoRA adapter trained on the base model (PEFT names)."""

    r: int = Field(ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(ge=1, description="LoRA scaling numerator (lora_alpha); scale = alpha / r.")
    dropout: float = Field(ge=0, lt=1, description="Dropout on the LoRA input during training.")
    target_modules: list[str] = Field(
        min_length=1,
        description="Module names that get adapters, e.g. q_proj; fused names are resolved per model; [all-linear].",
    )


class SFTConfig(StrictModel):
    """Supervised adapter training (loss on response tokens only)."""

    learning_rate: float = Field(gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(ge=0, description="AdamW weight decay.")
    epochs: int = Field(ge=1, description="Passes over the examples.")
    batch_size: int = Field(ge=1, description="Examples per optimiser step.")
    micro_batch_size: int = Field(
        ge=1, description="Examples per forward/backward pass; their gradients add up to the batch's (memory bound)."
    )
    shared_prefix: bool = Field(
        description="Run the tokens every example of a micro-batch starts with (the system turn) once for all of them."
    )
    cpu_autocast: Literal["auto", "none", "bfloat16"] = Field(
        description="On a CPU device, train under torch.autocast to bfloat16 (bfloat16), in float32 (none), or auto: "
        "bfloat16 for every base but the tiny advisor where the CPU multiplies bfloat16 natively."
    )
    grad_clip_norm: float = Field(gt=0, description="Gradients are clipped to this global L2 norm.")
    max_seq_len: int = Field(ge=16, description="Longest prompt+response in tokens; longer prompts lose their start.")
    loss_chunk_tokens: int = Field(
        ge=1, description="Response positions whose full-vocabulary logits are computed at once (memory bound)."
    )
    cpu_threads: int = Field(
        ge=0, description="Torch CPU threads while an adapter trains on a CPU device (restored after); 0 keeps the "
        "process setting."
    )


class WarmStartConfig(StrictModel):
    """Teacher warm start of a pretrained base: random contexts, rule-based targets, SFT so the model learns the
    answer format (the tiny advisor's own values are in :class:`TinyModelConfig`)."""

    n_examples: int = Field(ge=8, description="Synthetic contexts (and teacher answers) to train on.")
    epochs: int = Field(ge=1, description="Passes over them (replaces sft.epochs for the warm start).")
    learning_rate: float = Field(gt=0, description="AdamW learning rate for the warm start.")
    seed: int = Field(ge=0, description="Seed of the synthetic contexts (training itself uses the caller's seed).")


class WarmStartRun(StrictModel):
    """The warm start's size for one base: what :attr:`LLMConfig.warm_start_run` resolves to."""

    n_examples: int
    epochs: int
    learning_rate: float
    seed: int


class TinyModelConfig(StrictModel):
    """The embedded smoke-test model built under models/base/tiny-advisor on first use (Llama architecture)."""

    hidden_size: int = Field(ge=8, description="Model width.")
    intermediate_size: int = Field(ge=8, description="MLP width.")
    num_layers: int = Field(ge=1, description="Decoder layers.")
    num_heads: int = Field(ge=1, description="Attention heads (must divide hidden_size).")
    num_kv_heads: int = Field(ge=1, description="Key/value heads (grouped-query attention; divides num_heads).")
    vocab_size: int = Field(ge=300, description="Byte-level BPE vocabulary size trained on the prompt corpus.")
    max_position_embeddings: int = Field(ge=64, description="Longest sequence the model accepts.")
    initializer_range: float = Field(gt=0, le=1, description="Std of the random initial weights (embeddings too).")
    corpus_contexts: int = Field(ge=10, description="Synthetic contexts whose prompts and answers train the tokenizer.")
    seed: int = Field(ge=0, description="Seed for weights and the tokenizer corpus (same seed -> same model).")
    warm_start_examples: int = Field(ge=8, description="Warm-start contexts for the tiny advisor (random weights).")
    warm_start_epochs: int = Field(ge=1, description="Warm-start passes for the tiny advisor.")
    warm_start_learning_rate: float = Field(gt=0, description="Warm-start AdamW learning rate for the tiny advisor.")

    @model_validator(mode="after")
    def _heads(self) -> "TinyModelConfig":
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must divide hidden_size and num_kv_heads must divide num_heads")
        return self


class LLMConfig(StrictModel):
    """Where the advisor model lives, how it loads and generates, its prompts and its adapter training."""

    model: str = Field(
        min_length=1, description="`default` (the profile's default_model), a named base (smollm2-135m-instruct), a "
        "local .gguf file, a local model directory (relative to --root) or a hub id resolved from the cache."
    )
    default_model: str = Field(
        min_length=1, description="The base `model: default` stands for (any value `model` accepts but `default`)."
    )
    trust_remote_code: bool = Field(description="Allow model code shipped with the weights to run; off by default.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(description="auto: CUDA when available, else CPU.")
    load_in_4bit: bool = Field(description="Quantise weights to 4 bit with bitsandbytes (CUDA only).")
    load_in_8bit: bool = Field(description="Quantise weights to 8 bit with bitsandbytes (CUDA only).")
    cpu_keep_freed_memory: bool = Field(
        description="On CPU (Linux/glibc), keep freed large blocks in the process instead of re-mapping them per call."
    )
    adapter_path: str | None = Field(description="LoRA adapter directory (PEFT format) applied at load; null: none.")
    generation: GenerationConfig
    prompts: PromptConfig
    lora: LoraConfig
    sft: SFTConfig
    warm_start: WarmStartConfig
    tiny: TinyModelConfig

    @model_validator(mode="after")
    def _one_quantisation(self) -> "LLMConfig":
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("set at most one of load_in_4bit and load_in_8bit")
        if self.default_model == DEFAULT_MODEL:
            raise ValueError(f"default_model names the base `model: {DEFAULT_MODEL}` stands for; it cannot itself "
                             f"be {DEFAULT_MODEL!r} (try smollm2-135m-instruct or {TINY_ADVISOR_MODEL})")
        return self

    @property
    def base_model(self) -> str:
        """The base this config runs: ``model``, or ``default_model`` when ``model`` is ``default``."""
        return self.default_model if self.model == DEFAULT_MODEL else self.model

    @property
    def uses_tiny_advisor(self) -> bool:
        """Whether the base is the embedded tiny advisor's folder (``models/base/tiny-advisor``)."""
        from pathlib import PurePath

        return PurePath(self.base_model).parts[-3:] == PurePath(TINY_ADVISOR_MODEL).parts

    @property
    def warm_start_run(self) -> WarmStartRun:
        """The warm start's size for this base: ``tiny.warm_start_*`` for the tiny advisor (random weights need many
        passes at a high rate), ``warm_start`` for a pretrained base."""
        warm, tiny = self.warm_start, self.tiny
        if self.uses_tiny_advisor:
            return WarmStartRun(n_examples=tiny.warm_start_examples, epochs=tiny.warm_start_epochs,
                                learning_rate=tiny.warm_start_learning_rate, seed=warm.seed)
        return WarmStartRun(n_examples=warm.n_examples, epochs=warm.epochs, learning_rate=warm.learning_rate,
                            seed=warm.seed)

    @property
    def cpu_int8(self) -> bool:
        """Whether CPU generation runs an int8 copy (``generation.cpu_quantization`` resolved for this base)."""
        setting = self.generation.cpu_quantization
        return setting == "int8" or (setting == "auto" and not self.uses_tiny_advisor)

    @property
    def sft_cpu_bfloat16(self) -> bool:
        """Whether CPU training runs under bfloat16 autocast (``sft.cpu_autocast`` resolved for this base; ``auto``
        also needs native bfloat16 matrix products, checked by the trainer)."""
        setting = self.sft.cpu_autocast
        return setting == "bfloat16" or (setting == "auto" and not self.uses_tiny_advisor)

    @property
    def active_user_template(self) -> str:
        """The user template prompts are rendered with (``prompts.style`` resolved for this base)."""
        style = self.prompts.style
        if style == "auto":
            style = "full" if self.uses_tiny_advisor else "compact"
        return self.prompts.user_template if style == "full" else self.prompts.compact_user_template
