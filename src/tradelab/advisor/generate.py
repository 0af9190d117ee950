"""Batched advisor generation: one left-padded ``generate`` call per batch, an optional response cache, and stats.

:class:`Advisor` loads the model (and adapter) once. :meth:`Advisor.advise` takes market contexts (or ready chat
messages), renders the prompts, answers uncached ones in batches of ``llm.generation.batch_size`` and returns one
:class:`AdvisorReply` per input, in order. Under greedy decoding a batch gives exactly what one-at-a-time calls give:
left padding plus the attention mask keep every row's positions and attention the same as unpadded. The int8 copy
that CPU generation may run instead (``llm.generation.cpu_quantization``, :mod:`tradelab.advisor.quantize`) is other
arithmetic than float32, but quantizes each token's activations on their own, so the same holds for it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.advisor.prefix import PrefixCache
from tradelab.advisor.prompts import build_messages, context_key, render_chat
from tradelab.core.parse import Advice, check_allowed, parse_advice
from tradelab.threads import torch_threads

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.core.context import MarketContext

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class AdvisorReply:
    """One answer.

    Attributes:
        text: The raw generated text (special tokens removed).
        advice: The parsed advice; for a context input also checked against its allowed actions.
        messages: The chat messages the answer was generated for.
        cached: True when the answer came from the response cache.
        adapter: ``{"path", "sha256"}`` of the adapter that produced it, or None for the base model.
    """

    text: str
    advice: Advice
    messages: Messages
    cached: bool
    adapter: dict[str, str] | None


@dataclass(frozen=True)
class GenerationCall:
    """One ``generate`` call: how many prompts, how many tokens (``prefix_tokens`` of the prompt tokens came from the
    shared-prefix cache instead of prefill), how long."""

    batch_size: int
    prompt_tokens: int
    new_tokens: int
    latency_s: float
    prefix_tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.latency_s if self.latency_s > 0 else 0.0


@dataclass
class AdvisorStats:
    """Counters accumulated over an :class:`Advisor`'s life (``to_dict()`` for manifests and logs).

    ``shared_prefix_tokens`` is the prefix length the last call took from the prefix cache;
    ``prefix_cache_off_reason`` says why the last call used no prefix (None when it did).
    """

    queries: int = 0
    cache_hits: int = 0
    generate_calls: int = 0
    generated_tokens: int = 0
    prefix_tokens: int = 0
    shared_prefix_tokens: int = 0
    prefix_cache_off_reason: str | None = None
    generate_latency_s: float = 0.0
    parse_ok: int = 0
    disallowed: int = 0
    last_call: GenerationCall | None = None
    calls: list[GenerationCall] = field(default_factory=list)

    def record_call(self, call: GenerationCall, keep_calls: int = 1000) -> None:
        """Add one generate call (the last ``keep_calls`` are kept individually)."""
        self.generate_calls += 1
        self.generated_tokens += call.new_tokens
        self.prefix_tokens += call.prefix_tokens
        self.generate_latency_s += call.latency_s
        self.last_call = call
        self.calls.append(call)
        del self.calls[:-keep_calls]

    def record_reply(self, reply: AdvisorReply) -> None:
        self.queries += 1
        self.cache_hits += int(reply.cached)
        self.parse_ok += int(reply.advice.parse_ok)
        self.disallowed += int(reply.advice.parse_ok and not reply.advice.allowed)

    def to_dict(self) -> dict[str, Any]:
        generated = self.queries - self.cache_hits
        return {
            "queries": self.queries,
            "cache_hits": self.cache_hits,
            "cache_hit_rate": self.cache_hits / self.queries if self.queries else 0.0,
            "generate_calls": self.generate_calls,
            "mean_batch_size": generated / self.generate_calls if self.generate_calls else 0.0,
            "generated_tokens": self.generated_tokens,
            "prefix_cache_tokens": self.prefix_tokens,
            "prefix_cache_shared_tokens": self.shared_prefix_tokens,
            "prefix_cache_off_reason": self.prefix_cache_off_reason,
            "generate_latency_s": round(self.generate_latency_s, 4),
            "mean_latency_s": self.generate_latency_s / self.generate_calls if self.generate_calls else 0.0,
            "tokens_per_s": self.generated_tokens / self.generate_latency_s if self.generate_latency_s else 0.0,
            "parse_ok_rate": self.parse_ok / self.queries if self.queries else 0.0,
            "disallowed_rate": self.disallowed / self.queries if self.queries else 0.0,
            "last_call": asdict(self.last_call) if self.last_call else None,
        }


def _is_messages(item: Any) -> bool:
    return isinstance(item, list) and all(isinstance(m, dict) and "role" in m for m in item)


class Advisor:
    """The LLM advisor: model + tokenizer (+ LoRA adapter) loaded once, batched answers.

    Args:
        config: The whole config (``llm`` section: model, generation, prompts).
        root: Workspace root.
        adapter_path: Adapter to apply; None uses ``llm.adapter_path`` (which may itself be null).
        device: Override ``llm.device``.
    """

    def __init__(self, config: TradelabConfig, root: str | Path, *, adapter_path: str | Path | None = None,
                 device: str | None = None) -> None:
        from tradelab.advisor.load import load_advisor_model

        self.config = config
        self.root = Path(root)
        self.generation = config.llm.generation
        loaded = load_advisor_model(config, root, adapter_path=adapter_path, device=device)
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        self.model_dir, self.smoke_test_model, self.dtype = loaded.model_dir, loaded.smoke_test_model, loaded.dtype
        from tradelab.advisor.arch import sliding_window, stop_token_ids

        self.stop_token_ids: list[int] = stop_token_ids(self.tokenizer, getattr(self.model, "generation_config", None))
        """Ids that end an answer: EOS, the generation config's EOS list and the template's end-of-turn token."""
        self.sliding_window: int | None = sliding_window(self.model.config)
        self.stats = AdvisorStats()
        self._off_reasons_logged: set[str] = set()
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._prefix = PrefixCache()
        self._adapter: dict[str, str] | None = None
        self._adapter_count = 0
        self._merged = False
        self._int8: Any = None
        if loaded.adapter_path is not None:
            self._adapter = self._adapter_record(loaded.adapter_path)
            self._merge()

    # adapters
    @staticmethod
    def _adapter_record(path: Path) -> dict[str, str]:
        from tradelab.fileio import sha256_dir

        return {"path": str(path), "sha256": sha256_dir(path)}

    @property
    def adapter(self) -> dict[str, str] | None:
        """``{"path", "sha256"}`` of the applied adapter, or None."""
        return dict(self._adapter) if self._adapter else None

    @property
    def adapter_path(self) -> str | None:
        return self._adapter["path"] if self._adapter else None

    @property
    def adapter_sha256(self) -> str | None:
        return self._adapter["sha256"] if self._adapter else None

    def release_weights(self) -> None:
        """Drop the model's weights (and the int8 copy) until the next :meth:`set_adapter`, which loads the base
        again: while Stage 1 trains the next adapter, the training's own copy of the base takes their memory."""
        import gc

        self._cache.clear()
        self._prefix.clear()
        self.model, self._int8, self._merged = None, None, False
        gc.collect()

    def set_adapter(self, path: str | Path | None) -> None:
        """Apply the adapter at ``path`` (re-read even if the path is unchanged), or remove it with None.

        The response cache is cleared: cached answers belong to the previous weights. After
        :meth:`release_weights` the base is loaded again first.
        """
        from peft import PeftModel

        from tradelab.advisor.load import load_base_model, resolve_adapter_dir

        self._cache.clear()
        self._prefix.clear()
        self._int8 = None
        if self.model is None:
            self.model, _ = load_base_model(self.model_dir, self.config.llm, self.device)
            self.model.eval()
        if path is None:
            if isinstance(self.model, PeftModel):
                self._unmerge()
                self.model = self.model.unload()
            self._adapter = None
            return
        adapter_dir = resolve_adapter_dir(path, self.root)
        self._adapter_count += 1
        name = f"adapter_{self._adapter_count}"
        if isinstance(self.model, PeftModel):
            self._unmerge()
            previous = self.model.active_adapter
            self.model.load_adapter(adapter_dir, adapter_name=name, is_trainable=False)
            self.model.set_adapter(name)
            self.model.delete_adapter(previous)
        else:
            self.model = PeftModel.from_pretrained(self.model, adapter_dir, adapter_name=name, is_trainable=False)
        self._merge()
        self._adapter = self._adapter_record(adapter_dir)

    def _merge(self) -> None:
        """Fold the LoRA weights into the base for inference (about twice as fast on small models).

        Quantised bases keep the adapter separate: merging into 4/8-bit weights would not be reversible.
        """
        llm = self.config.llm
        if not (llm.load_in_4bit or llm.load_in_8bit) and not self._merged:
            self.model.merge_adapter()
            self._merged = True
        self.model.eval()

    def _unmerge(self) -> None:
        if self._merged:
            self.model.unmerge_adapter()
            self._merged = False

    @property
    def quantized(self) -> bool:
        """Whether generation runs an int8 copy (``llm.generation.cpu_quantization`` resolved for the base, on a CPU
        device, weights not already quantised by bitsandbytes)."""
        llm = self.config.llm.model_copy(update={"generation": self.generation})
        return llm.cpu_int8 and str(self.device).startswith("cpu") and not (llm.load_in_4bit or llm.load_in_8bit)

    def generation_model(self) -> Any:
        """The model ``generate`` runs: :attr:`model`, or its int8 copy (:func:`tradelab.advisor.quantize.int8_copy`),
        built from the current weights on first use after each adapter change."""
        if not self.quantized:
            return self.model
        if self._int8 is None:
            from tradelab.advisor.quantize import int8_copy, int8_matmul_available

            if not int8_matmul_available():
                if self.generation.cpu_quantization == "int8":
                    from tradelab.errors import ConfigError

                    raise ConfigError("config/llm.yaml: generation.cpu_quantization = 'int8' but this torch cannot "
                                      "multiply int8 matrices on the CPU (torch._int_mm); set it to auto or none")
                log.info("int8 generation: torch._int_mm is not available; generating with the float weights")
                return self.model
            self._int8 = int8_copy(self.model)
        return self._int8

    def model_info(self) -> dict[str, Any]:
        """``{name, local_path, smoke_test_model, sha256, source}`` of the base model, for manifests and reports."""
        from tradelab.advisor.bases import model_info

        return model_info(self.model_dir)

    # generation
    def generate_texts(self, messages_list: Sequence[Messages], *, seed: int | None = None) -> list[str]:
        """Raw answers for chat messages, ``generation.batch_size`` prompts per ``generate`` call (no cache)."""
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                for ids in self.generate_token_ids(messages_list, seed=seed)]

    def generate_token_ids(self, messages_list: Sequence[Messages], *, seed: int | None = None) -> list[list[int]]:
        """The generated token ids of each answer, up to and including its stop token (no padding after it)."""
        answers: list[list[int]] = []
        step = self.generation.batch_size
        for start in range(0, len(messages_list), step):
            answers.extend(self._generate_batch(messages_list[start:start + step], seed=seed))
        return answers

    def _sampling_kwargs(self) -> dict[str, Any]:
        """Decoding settings from ``llm.generation`` only.

        A model's ``generation_config`` may carry its vendor's chat defaults (Qwen2.5: ``repetition_penalty``
        1.05); the penalty is turned off because it would also count each row's left padding, so a padded row
        would decode differently from the same prompt alone.
        """
        gen = self.generation
        if not gen.do_sample:
            return {"do_sample": False, "repetition_penalty": 1.0}
        return {"do_sample": True, "temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k,
                "repetition_penalty": 1.0}

    def _shared_prefix(self, batch: Sequence[Messages], rows: Sequence[Sequence[int]]) -> tuple[list[int], str | None]:
        """The token ids every row of the batch starts with up to the start of its last turn's content, and why
        there are none when there are none.

        The boundary is where two renderings of the batch's leading turns followed by different last-turn contents
        part (so it includes the last turn's header, and a system turn that the template folds into the first user
        turn, as Gemma's does); the ids are the rows' own, so the prefix is exactly what prefill would see.
        """
        gen = self.generation
        if not gen.prefix_cache:
            return [], "llm.generation.prefix_cache is false"
        if len(batch[0]) < 2 or any(m[:-1] != batch[0][:-1] for m in batch):
            return [], "the prompts of the batch differ before their last turn"
        from jinja2 import TemplateError

        lead, role = batch[0][:-1], batch[0][-1]["role"]
        try:
            probes = [render_chat(self.tokenizer, [*lead, {"role": role, "content": text}]) for text in ("0", "1")]
        except TemplateError:  # a template that rejects the probe conversation: no prefix, never a wrong one
            return [], "the chat template rejected the probe conversation"
        hint = self.tokenizer(os.path.commonprefix(probes), add_special_tokens=False)["input_ids"]
        n = PrefixCache.common_length([hint, *rows])
        n = min(n, min(len(row) for row in rows) - 1)  # every row keeps a token of its own for prefill
        if n <= 0:
            return [], "the chat template shares no tokens between prompts"
        window = self.sliding_window
        width = max(len(row) for row in rows) + gen.max_new_tokens
        if window is not None and width >= window:
            # [prefix][pad][own] rows put padding between the prefix and each row's tokens; a sliding window
            # counts physical positions, so it would drop prefix tokens a row sees unpadded.
            return [], (f"sliding-window attention (window {window} tokens) is narrower than the batch "
                        f"({width} tokens with the answer)")
        return list(rows[0][:n]), None

    def _generate_batch(self, batch: Sequence[Messages], *, seed: int | None) -> list[list[int]]:
        import torch

        started = time.perf_counter()
        prompts = [render_chat(self.tokenizer, m) for m in batch]
        rows = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        prefix, off_reason = self._shared_prefix(batch, rows)
        self.stats.shared_prefix_tokens, self.stats.prefix_cache_off_reason = len(prefix), off_reason
        if off_reason is not None and off_reason.split(" (")[0] not in self._off_reasons_logged:
            self._off_reasons_logged.add(off_reason.split(" (")[0])  # once per cause, not per batch width
            log.info("advisor prefix cache not used: %s", off_reason)
        threads = self.generation.cpu_threads if str(self.device).startswith("cpu") else 0
        with torch_threads(threads):
            model = self.generation_model()
            inputs = self._prefix.inputs(model, rows, prefix, pad_token_id=self.tokenizer.pad_token_id,
                                         device=self.device)
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                output = model.generate(
                    **inputs, max_new_tokens=self.generation.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.stop_token_ids, **self._sampling_kwargs(),
                )
        latency = time.perf_counter() - started
        answers = [self._answer(row) for row in output[:, inputs["input_ids"].shape[1]:].cpu().tolist()]
        self.stats.record_call(GenerationCall(
            batch_size=len(batch), prompt_tokens=sum(len(row) for row in rows),
            new_tokens=sum(len(a) for a in answers), latency_s=latency, prefix_tokens=len(prefix) * len(batch),
        ))
        return answers

    def _answer(self, ids: list[int]) -> list[int]:
        """Generated tokens up to and including the first stop token (the rest is padding)."""
        stops = set(self.stop_token_ids)
        return ids[:next((i + 1 for i, token in enumerate(ids) if token in stops), len(ids))]

    def _key(self, item: MarketContext | Messages) -> str:
        body = json.dumps(item, sort_keys=True) if _is_messages(item) else context_key(item)  # type: ignore[arg-type]
        return f"{self.adapter_sha256}|{body}"

    def advise(self, items: Sequence[MarketContext | Messages], *, seed: int | None = None) -> list[AdvisorReply]:
        """Answer each context (or chat message list); uncached ones go through batched ``generate`` calls.

        Args:
            items: Market contexts (``info["market_context"]``) or ready chat message lists, mixed freely.
            seed: Torch seed set before each generate call (only matters when sampling).

        Returns:
            One reply per item, in order. Context replies are checked against the context's allowed actions.
        """
        messages = [list(item) if _is_messages(item) else build_messages(item, self.config) for item in items]
        use_cache = self.generation.cache
        keys = [self._key(item) for item in items] if use_cache else [""] * len(items)
        texts: list[str | None] = [self._cache_get(k) if use_cache else None for k in keys]
        cached = [t is not None for t in texts]
        todo = [i for i, t in enumerate(texts) if t is None]
        fresh = self.generate_texts([messages[i] for i in todo], seed=seed) if todo else []
        for i, text in zip(todo, fresh):
            texts[i] = text
            if use_cache:
                self._cache_put(keys[i], text)
        replies = []
        for i, item in enumerate(items):
            advice = parse_advice(texts[i])
            if not _is_messages(item):
                advice = check_allowed(advice, item["allowed_actions"])  # type: ignore[index]
            reply = AdvisorReply(text=texts[i] or "", advice=advice, messages=messages[i], cached=cached[i],
                                 adapter=self.adapter)
            self.stats.record_reply(reply)
            replies.append(reply)
        return replies

    def _cache_get(self, key: str) -> str | None:
        text = self._cache.get(key)
        if text is not None:
            self._cache.move_to_end(key)
        return text

    def _cache_put(self, key: str, text: str) -> None:
        self._cache[key] = text
        self._cache.move_to_end(key)
        while len(self._cache) > self.generation.cache_max_entries:
            self._cache.popitem(last=False)
