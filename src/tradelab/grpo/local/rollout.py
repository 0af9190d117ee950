"""Batched, KV-cached rollouts: discrete sampling and SofT-GRPO soft thinking (ARCHITECTURE.md §10).

One loop serves both modes. The prompts of a step are left-padded into one batch, prefilled once, and then each
decode step feeds a single input embedding per row through ``past_key_values``:

- a *discrete* step samples a token from softmax(z/T) filtered by top-k/top-p and feeds its embedding;
- a *soft* step keeps the K most likely tokens of that filtered distribution (renormalised to q), draws clamped
  Gumbel noise g, forms g' = log(q + 1e-6) + lambda*g, emits argmax g' and feeds sum_i softmax(g'/tau)_i * E[id_i].

Soft steps run inside the thinking part only: from the step after the think-start marker (or from the first step
when the prompt already ends with it, or when no start marker is configured) until the think-end marker has been
emitted or ``max_think_tokens`` soft steps were taken. Everything else, the answer line included, is discrete, and
thinking never reopens within an answer. Each step records what the trainer needs
to rebuild the same inputs and score the same sample: the emitted id, the K slot ids, g', the kept-slot mask, a soft
flag (scored by the Gumbel log-density) and a mix flag (the next input is the mixture rather than the token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tradelab.grpo.local.data import PromptRow

Q_EPS = 1e-6
"""The constant inside log(q + eps) for noisy logits and log(pi + eps) in the log-density."""


@dataclass(frozen=True)
class SamplingSpec:
    """How to pick each token.

    Attributes:
        temperature: T applied to the logits.
        top_k: Keep the k most likely tokens (0 = off).
        top_p: Nucleus mass kept (1.0 = off).
        greedy: Take the argmax instead of sampling (validation); soft settings are then ignored.
        soft_slots: K for soft steps; 0 means discrete decoding throughout.
        gumbel_tau: tau of the mixture weights softmax(g'/tau).
        noise_factor: lambda scaling the Gumbel noise.
        noise_min: Lower clamp of the Gumbel noise.
        noise_max: Upper clamp of the Gumbel noise.
        max_think_tokens: Soft steps allowed before decoding turns discrete.
    """

    temperature: float
    top_k: int
    top_p: float
    greedy: bool = False
    soft_slots: int = 0
    gumbel_tau: float = 0.1
    noise_factor: float = 1.0
    noise_min: float = -1.5
    noise_max: float = 3.0
    max_think_tokens: int = 0


@dataclass
class RolloutBatch:
    """The sampled answers of one batch, right-padded to the longest answer.

    Attributes:
        prompt_ids: ``[B, P]`` left-padded prompt ids.
        prompt_mask: ``[B, P]`` 1 on real prompt tokens.
        tokens: ``[B, L]`` emitted ids (pad id after an answer ends).
        mask: ``[B, L]`` 1 on generated steps (the stop token included).
        soft: ``[B, L]`` bool, step is scored with the Gumbel log-density.
        mix: ``[B, L]`` bool, the input after this step is the soft mixture.
        slot_ids: ``[B, L, K]`` top-K ids of soft steps (0 elsewhere; K = 1 in discrete mode).
        noisy_logits: ``[B, L, K]`` g' of soft steps.
        slot_mask: ``[B, L, K]`` bool, slots that survived the top-k/top-p filter.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    soft: torch.Tensor
    mix: torch.Tensor
    slot_ids: torch.Tensor
    noisy_logits: torch.Tensor
    slot_mask: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])

    def rows(self, index: torch.Tensor | slice) -> RolloutBatch:
        """The sub-batch of ``index`` rows (same padding)."""
        return RolloutBatch(**{name: getattr(self, name)[index] for name in self.__dataclass_fields__})

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(**{name: getattr(self, name).to(device) for name in self.__dataclass_fields__})


_PROMPT_FIELDS = ("prompt_ids", "prompt_mask")


def concat_batches(batches: Sequence[RolloutBatch], pad_id: int) -> RolloutBatch:
    """One batch of the rows of ``batches``: prompts left-padded and answers right-padded to the widest.

    Positions are counted from the attention mask (:func:`generate`, ``rebuild_inputs``), so extra padding on either
    side leaves every real token where it was.
    """
    if len(batches) == 1:
        return batches[0]
    width_p = max(b.prompt_ids.shape[1] for b in batches)
    width_l = max(b.tokens.shape[1] for b in batches)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in RolloutBatch.__dataclass_fields__}
    for batch in batches:
        for name in RolloutBatch.__dataclass_fields__:
            value = getattr(batch, name)
            if name in _PROMPT_FIELDS:
                missing, left = width_p - value.shape[1], True
            else:
                missing, left = width_l - value.shape[1], False
            if missing:
                fill = pad_id if name in ("prompt_ids", "tokens") else 0
                shape = (value.shape[0], missing, *value.shape[2:])
                pad = torch.full(shape, fill, dtype=value.dtype, device=value.device)
                value = torch.cat([pad, value] if left else [value, pad], dim=1)
            parts[name].append(value)
    return RolloutBatch(**{name: torch.cat(values, dim=0) for name, values in parts.items()})


def filtered_probs(logits: torch.Tensor, spec: SamplingSpec) -> torch.Tensor:
    """softmax(logits / T) with the top-k and top-p filters applied and renormalised (float32)."""
    probs = torch.softmax(logits.float() / spec.temperature, dim=-1)
    if 0 < spec.top_k < probs.shape[-1]:
        kth = torch.topk(probs, spec.top_k, dim=-1).values[..., -1:]
        probs = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    if spec.top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p
        keep_sorted = before < spec.top_p * sorted_p.sum(-1, keepdim=True)
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
    return probs / probs.sum(-1, keepdim=True)


def soft_step(
    logits: torch.Tensor, spec: SamplingSpec, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SofT-GRPO sampling step for a batch of next-token logits ``[B, V]``.

    Returns:
        ``(token, slot_ids, noisy_logits, slot_mask)``: the emitted ids ``[B]`` (argmax g'), the top-K ids
        ``[B, K]``, g' ``[B, K]`` and the kept-slot mask ``[B, K]``.
    """
    probs = filtered_probs(logits, spec)
    top_q, slot_ids = torch.topk(probs, spec.soft_slots, dim=-1)
    slot_mask = top_q > 0
    q = top_q / top_q.sum(-1, keepdim=True)
    uniform = torch.rand(q.shape, generator=generator, device=q.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    gumbel = gumbel.clamp(spec.noise_min, spec.noise_max)
    noisy = torch.log(q + Q_EPS) + spec.noise_factor * gumbel
    pick = torch.where(slot_mask, noisy, torch.full_like(noisy, float("-inf"))).argmax(-1)
    token = slot_ids.gather(-1, pick[:, None]).squeeze(-1)
    return token, slot_ids, noisy, slot_mask


def mixture_weights(noisy_logits: torch.Tensor, slot_mask: torch.Tensor, tau: float) -> torch.Tensor:
    """y = softmax(g' / tau) over the kept slots (zero weight on the others)."""
    scaled = torch.where(slot_mask, noisy_logits / tau, torch.full_like(noisy_logits, float("-inf")))
    return torch.softmax(scaled, dim=-1)


def soft_embedding(
    embed: torch.nn.Module,
    slot_ids: torch.Tensor,
    noisy_logits: torch.Tensor,
    slot_mask: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """sum_i y_i * E[id_i] for ``[..., K]`` slots, in the embedding's dtype."""
    weights = mixture_weights(noisy_logits, slot_mask, tau)
    vectors = embed(slot_ids)
    return (weights.to(vectors.dtype).unsqueeze(-1) * vectors).sum(-2)


def discrete_step(logits: torch.Tensor, spec: SamplingSpec, generator: torch.Generator | None) -> torch.Tensor:
    """Sample (or take the argmax of) the next token for ``[B, V]`` logits."""
    if spec.greedy:
        return logits.argmax(-1)
    probs = filtered_probs(logits, spec)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _marker_mask(history: list[list[int]], marker: list[int], device: torch.device) -> torch.Tensor:
    """Rows whose emitted ids end with ``marker`` (all False for an empty marker)."""
    return torch.tensor([bool(marker) and ids[-len(marker):] == marker for ids in history], device=device)


@dataclass(frozen=True)
class StopSpec:
    """When answers end and thinking stops.

    Attributes:
        pad_id: Id written after an answer ended (and used for left padding).
        stop_ids: Ids that end an answer (EOS, end-of-turn); the stop token is part of the answer.
        think_end_ids: The think-end marker's ids; once emitted, decoding is discrete.
        max_new_tokens: Hard cap on steps.
        think_start_ids: The think-start marker's ids; empty means thinking starts with the first answer token.
    """

    pad_id: int
    stop_ids: frozenset[int]
    think_end_ids: tuple[int, ...]
    max_new_tokens: int
    think_start_ids: tuple[int, ...] = ()


def _forward_step(
    model: torch.nn.Module, embeds: torch.Tensor, attn: torch.Tensor, positions: torch.Tensor, past: Any
) -> tuple[torch.Tensor, Any]:
    """One cached forward; returns the last position's float32 logits and the updated cache."""
    out = model(
        inputs_embeds=embeds, attention_mask=attn, position_ids=positions, past_key_values=past, use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1].float(), out.past_key_values


def generate(
    model: torch.nn.Module,
    prompts: list[list[int]],
    spec: SamplingSpec,
    stop: StopSpec,
    generator: torch.Generator | None = None,
) -> RolloutBatch:
    """Sample one answer per prompt with a KV cache; soft steps follow SofT-GRPO when ``spec.soft_slots > 0``.

    Args:
        model: A causal LM (plain or PEFT-wrapped) accepting ``inputs_embeds`` and ``past_key_values``.
        prompts: Tokenised prompts (repeat a prompt n times for a group).
        spec: Sampling settings.
        stop: Stop ids, think-end marker, pad id and length cap.
        generator: Source of randomness (seeded by the caller for reproducible rollouts).

    Returns:
        The recorded batch; the caller decodes ``tokens`` where ``mask`` is set.
    """
    from tradelab.advisor.prefix import left_pad

    device = next(model.parameters()).device
    prompt_ids, prompt_mask = (t.to(device) for t in left_pad(prompts, stop.pad_id))
    embed = model.get_input_embeddings()
    rows, slots = len(prompts), max(spec.soft_slots, 1)
    attn = prompt_mask.clone()
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits, past = _forward_step(model, embed(prompt_ids), attn, positions, None)
    next_pos = positions[:, -1:] + 1
    use_soft = spec.soft_slots > 0 and spec.max_think_tokens > 0 and not spec.greedy
    opener = list(stop.think_start_ids)
    thinking = torch.tensor([use_soft and (not opener or p[-len(opener):] == opener) for p in prompts], device=device)
    closed = torch.zeros(rows, dtype=torch.bool, device=device)
    soft_used = torch.zeros(rows, dtype=torch.long, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(sorted(stop.stop_ids), dtype=torch.long, device=device)
    history: list[list[int]] = [[] for _ in range(rows)]
    steps: list[dict[str, torch.Tensor]] = []
    for _ in range(stop.max_new_tokens):
        rec = _pick(logits, spec, thinking, done, stop.pad_id, slots, generator)
        for ids, token, live in zip(history, rec["tokens"].tolist(), (~done).tolist(), strict=True):
            if live:
                ids.append(token)
        ended = _marker_mask(history, list(stop.think_end_ids), device) & rec["soft"]
        stopped = torch.isin(rec["tokens"], stop_ids) & ~done
        rec["mix"] = rec["soft"] & ~ended & ~stopped
        rec["mask"] = ~done
        soft_used += rec["soft"].long()
        finished = rec["soft"] & (ended | (soft_used >= spec.max_think_tokens))
        closed |= finished
        opened = torch.zeros_like(closed)
        if use_soft and opener:
            opened = _marker_mask(history, opener, device) & ~rec["soft"] & ~closed
        thinking = (thinking & ~finished) | opened
        done = done | stopped
        steps.append(rec)
        if bool(done.all()):
            break
        attn = torch.cat([attn, torch.ones((rows, 1), dtype=attn.dtype, device=device)], dim=1)
        with torch.no_grad():
            logits, past = _forward_step(model, _next_input(embed, rec, spec.gumbel_tau), attn, next_pos, past)
        next_pos = next_pos + 1
    return _stack(prompt_ids, prompt_mask, steps)


def _next_input(embed: torch.nn.Module, rec: dict[str, torch.Tensor], tau: float) -> torch.Tensor:
    """``[B, 1, H]``: the soft mixture on mix rows, the emitted token's embedding elsewhere."""
    token_emb = embed(rec["tokens"])
    if bool(rec["mix"].any()):
        mixed = soft_embedding(embed, rec["slot_ids"], rec["noisy_logits"], rec["slot_mask"], tau)
        token_emb = torch.where(rec["mix"][:, None], mixed.to(token_emb.dtype), token_emb)
    return token_emb[:, None]


def _pick(
    logits: torch.Tensor,
    spec: SamplingSpec,
    thinking: torch.Tensor,
    done: torch.Tensor,
    pad_id: int,
    slots: int,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """Choose this step's token per row: soft where ``thinking``, discrete elsewhere, pad where ``done``."""
    rows, device = logits.shape[0], logits.device
    soft = thinking & ~done
    slot_ids = torch.zeros((rows, slots), dtype=torch.long, device=device)
    noisy = torch.zeros((rows, slots), dtype=torch.float32, device=device)
    slot_mask = torch.zeros((rows, slots), dtype=torch.bool, device=device)
    tokens = torch.full((rows,), pad_id, dtype=torch.long, device=device)
    if bool((~soft & ~done).any()):
        tokens = torch.where(~soft & ~done, discrete_step(logits, spec, generator), tokens)
    if bool(soft.any()):
        s_tok, s_ids, s_noisy, s_mask = soft_step(logits, spec, generator)
        tokens = torch.where(soft, s_tok, tokens)
        slot_ids = torch.where(soft[:, None], s_ids, slot_ids)
        noisy = torch.where(soft[:, None], s_noisy, noisy)
        slot_mask = s_mask & soft[:, None]
    return {"tokens": tokens, "soft": soft, "slot_ids": slot_ids, "noisy_logits": noisy, "slot_mask": slot_mask}


def _stack(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, steps: list[dict[str, torch.Tensor]]
) -> RolloutBatch:
    def col(name: str) -> torch.Tensor:
        return torch.stack([s[name] for s in steps], dim=1)

    return RolloutBatch(
        prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=col("tokens"), mask=col("mask").long(),
        soft=col("soft"), mix=col("mix"), slot_ids=col("slot_ids"), noisy_logits=col("noisy_logits"),
        slot_mask=col("slot_mask"),
    )


# ---------------------------------------------------------------------------------------------- rewards
RewardFn = Callable[..., dict[str, Any]]


@dataclass
class AnswerScores:
    """Rewards of a batch of answers.

    Attributes:
        rewards: Score per answer (blocklisted answers score the reward's malformed penalty).
        formats: 1.0 when the answer was well formed, per answer.
        blocked: Answers the ground truth's blocklist caught.
    """

    rewards: list[float]
    formats: list[float]
    blocked: int

    @property
    def mean(self) -> float:
        return sum(self.rewards) / max(len(self.rewards), 1)

    @property
    def format_rate(self) -> float:
        return sum(self.formats) / max(len(self.formats), 1)


def default_reward() -> RewardFn:
    """The engine-independent reward :func:`tradelab.grpo.reward.compute_score`."""
    from tradelab.core.reward import compute_score

    return compute_score


def score_answers(rows: Sequence[PromptRow], texts: Sequence[str], reward_fn: RewardFn) -> AnswerScores:
    """Score each answer against its row's ground truth.

    Args:
        rows: The prompt row of each answer (repeated for a group).
        texts: Decoded answers, aligned with ``rows``.
        reward_fn: ``compute_score``-compatible callable returning at least ``score``, ``format`` and ``blocked``.
    """
    rewards, formats, n_blocked = [], [], 0
    for row, text in zip(rows, texts, strict=True):
        result = reward_fn(row.data_source, text, row.ground_truth, extra_info=row.extra_info)
        formats.append(float(result["format"]))
        n_blocked += int(result.get("blocked", 0.0) > 0.0)
        rewards.append(float(result["score"]))
    return AnswerScores(rewards=rewards, formats=formats, blocked=n_blocked)
