"""One GRPO step (rollout -> reward -> advantages -> old/ref scores -> PPO updates) and validation.

Every random draw of step ``s`` comes from generators seeded by ``(seed, s)``, so a step's rollouts depend only on
the seed, the step number and the weights: a run resumed from a checkpoint repeats the original run's next steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tradelab.config.grpo_local_schema import GrpoLocalConfig
from tradelab.grpo.baselines import sides_balanced_mean
from tradelab.grpo.local.data import PromptRow
from tradelab.grpo.local.groups import GroupTally, pick_signal_groups
from tradelab.grpo.local.loss import LossSpec, ScoreSpec, grpo_advantages, policy_loss, step_scores
from tradelab.grpo.local.rollout import (
    AnswerScores,
    RewardFn,
    RolloutBatch,
    SamplingSpec,
    StopSpec,
    concat_batches,
    generate,
    score_answers,
)

VAL_STREAM = 1
ROLLOUT_STREAM = 0
DYNAMIC_STREAM_STRIDE = 16
"""Dynamic-sampling round r draws from stream ``ROLLOUT_STREAM + r * DYNAMIC_STREAM_STRIDE`` (round 0 is the
step's usual stream, so a run without dynamic sampling samples exactly what it did before)."""
VAL_CHUNK_ROWS = 64


def stream_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for (run seed, step, stream) from NumPy's SeedSequence."""
    return int(np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint64)[0] >> 1)


def sampling_spec(cfg: GrpoLocalConfig, mode: str) -> SamplingSpec:
    """The rollout sampling settings; ``soft_slots`` is 0 in discrete mode."""
    soft = cfg.soft
    return SamplingSpec(
        temperature=cfg.rollout.temperature, top_k=cfg.rollout.top_k, top_p=cfg.rollout.top_p,
        soft_slots=soft.top_k if mode == "soft" else 0, gumbel_tau=soft.gumbel_softmax_temperature,
        noise_factor=soft.noise_factor, noise_min=soft.noise_min, noise_max=soft.noise_max,
        max_think_tokens=soft.max_think_tokens,
    )


@dataclass
class StepContext:
    """What every step needs.

    Attributes:
        model: The PEFT policy (eval mode).
        tokenizer: Its tokenizer.
        cfg: Effective engine settings (test overrides applied).
        mode: ``soft`` or ``discrete``.
        stop: Stop/think-end ids.
        optimizer: AdamW over the adapter.
        scheduler: LR schedule.
        params: Trainable parameters (for clipping).
        reward_fn: ``compute_score``-compatible reward.
    """

    model: Any
    tokenizer: Any
    cfg: GrpoLocalConfig
    mode: str
    stop: StopSpec
    optimizer: Any
    scheduler: Any
    params: list[Any]
    reward_fn: RewardFn

    @property
    def score_spec(self) -> ScoreSpec:
        soft = self.cfg.soft
        return ScoreSpec(self.cfg.rollout.temperature, soft.gumbel_softmax_temperature, soft.noise_min, soft.noise_max)

    @property
    def loss_spec(self) -> LossSpec:
        o = self.cfg.optim
        return LossSpec(clip_eps=o.clip_eps, dual_clip=o.dual_clip, kl_coef=o.kl_coef)


def decode_answers(tokenizer: Any, batch: RolloutBatch, stop: StopSpec) -> list[str]:
    """Answer texts: generated ids without the stop token, special tokens kept (the parser handles think tags)."""
    texts = []
    for tokens, mask in zip(batch.tokens.tolist(), batch.mask.tolist(), strict=True):
        ids = [t for t, m in zip(tokens, mask, strict=True) if m and t not in stop.stop_ids]
        texts.append(tokenizer.decode(ids, skip_special_tokens=False))
    return texts


def choose_prompts(n_rows: int, count: int, seed: int, step: int, round_: int = 0,
                   taken: Sequence[int] = (), sides: Sequence[str | None] | None = None) -> list[int]:
    """Prompt indices of a step's sampling round (without replacement while the split allows).

    Round 0 is the step's batch; a dynamic-sampling round ``r > 0`` draws from its own stream and prefers prompts the
    step has not drawn yet (``taken``). With ``sides`` (each row's
    :func:`~tradelab.grpo.baselines.hindsight_side`) the draw is balanced between the two sides, as
    ``optim.prompt_draw: sides_balanced`` describes (:func:`_balanced_draw`).
    """
    if round_ == 0:
        rng = np.random.default_rng([seed, step, 7])
        pool = np.arange(n_rows)
    else:
        rng = np.random.default_rng([seed, step, 7, round_])
        fresh = np.setdiff1d(np.arange(n_rows), np.asarray(taken, dtype=np.int64))
        pool = fresh if fresh.size >= count else np.arange(n_rows)
    if sides is not None:
        if len(sides) != n_rows:
            raise ValueError(f"{len(sides)} sides for {n_rows} rows")
        drawn = _balanced_draw(pool, count, sides, rng)
        if drawn is not None:
            return drawn
    return rng.choice(pool, size=count, replace=count > pool.size).tolist()


def _balanced_draw(pool: Any, count: int, sides: Sequence[str | None], rng: np.random.Generator) -> list[int] | None:
    """``count`` rows of ``pool``: as many BUY-won as SELL-won, the others by a binomial draw at their pool share.

    With an even ``count``, an odd number left for the sides moves one row to or from the others (at random), so the
    sides stay even; with an odd ``count`` the sides' odd row goes to a random side. None when the
    pool lacks a side (nothing to balance: the caller draws uniformly). A stratum smaller than its share is drawn
    with replacement.
    """
    strata = {side: [int(i) for i in pool if sides[int(i)] == side] for side in ("BUY", "SELL")}
    if not strata["BUY"] or not strata["SELL"]:
        return None
    others = [int(i) for i in pool if sides[int(i)] not in ("BUY", "SELL")]
    n_others = int(rng.binomial(count, len(others) / len(pool))) if others else 0
    if count % 2 == 0 and n_others % 2:  # then 1 <= n_others <= count - 1, so either move stays in range
        n_others += 1 if rng.random() < 0.5 else -1
    n_sides = count - n_others
    n_buy = n_sides // 2 + (n_sides % 2 if rng.random() < 0.5 else 0)
    wanted = {"BUY": n_buy, "SELL": n_sides - n_buy}
    picks: list[int] = []
    for members, n in ((strata["BUY"], wanted["BUY"]), (strata["SELL"], wanted["SELL"]), (others, n_others)):
        if n:
            picks += rng.choice(members, size=n, replace=n > len(members)).tolist()
    return [int(i) for i in rng.permutation(picks)]


@dataclass
class SampledStep:
    """What a step's sampling rounds produced.

    Attributes:
        batch: The rollouts the update trains on (the kept groups, in sampling order).
        rewards: Their rewards, group after group.
        scores: Every sampled answer's scores (all rounds), for the step's reward and format figures.
        tally: Group counts over every round.
        rollout_s: Seconds spent generating.
        reward_s: Seconds spent scoring.
        generated_tokens: Answer tokens generated over every round.
        generated_soft_steps: Of those, the soft-thinking steps.
    """

    batch: RolloutBatch | None
    rewards: list[float]
    scores: AnswerScores
    tally: GroupTally
    rollout_s: float
    reward_s: float
    generated_tokens: int
    generated_soft_steps: int


def sample_groups(ctx: StepContext, rows: Sequence[PromptRow], step: int,
                  sides: Sequence[str | None] | None = None) -> SampledStep:
    """Sample the step's groups; with ``dynamic_sampling`` drop zero-variance groups and draw more prompts.

    Each round draws ``prompts_per_step`` prompts of ``group_size`` answers. Without dynamic sampling the first
    round is the batch. With it, groups whose rewards are all equal are dropped and rounds continue until
    ``prompts_per_step`` groups carry a signal or ``max_rounds`` rounds were drawn; at the cap the step keeps what
    it has (possibly nothing).

    Args:
        ctx: The run's step context.
        rows: The training rows.
        step: The step number (0-based), which seeds its draws.
        sides: Each row's hindsight side; required by ``optim.prompt_draw: sides_balanced``, ignored otherwise.

    Raises:
        ValueError: ``sides_balanced`` without ``sides``.
    """
    cfg, n = ctx.cfg, ctx.cfg.rollout.group_size
    balanced = cfg.optim.prompt_draw == "sides_balanced"
    if balanced and sides is None:
        raise ValueError("optim.prompt_draw is sides_balanced but no row sides were given")
    dynamic = cfg.dynamic_sampling
    want = cfg.optim.prompts_per_step
    rounds = dynamic.max_rounds if dynamic.enabled else 1
    device = next(ctx.model.parameters()).device
    tally = GroupTally()
    kept_batches: list[RolloutBatch] = []
    kept_rewards: list[float] = []
    all_rewards: list[float] = []
    all_formats: list[float] = []
    blocked = 0
    taken: list[int] = []
    rollout_s = reward_s = 0.0
    generated = soft_steps = 0
    for round_ in range(rounds):
        started = time.perf_counter()
        picks = choose_prompts(len(rows), want, cfg.seed, step, round_, taken, sides if balanced else None)
        taken += picks
        group_rows = [rows[i] for i in picks for _ in range(n)]
        generator = torch.Generator(device=device).manual_seed(
            stream_seed(cfg.seed, step, ROLLOUT_STREAM + DYNAMIC_STREAM_STRIDE * round_))
        batch = generate(ctx.model, [r.prompt_ids for r in group_rows], sampling_spec(cfg, ctx.mode), ctx.stop,
                         generator)
        rollout_s += time.perf_counter() - started
        generated += int(batch.mask.sum())
        soft_steps += int(batch.soft.sum())
        started = time.perf_counter()
        scores = score_answers(group_rows, decode_answers(ctx.tokenizer, batch, ctx.stop), ctx.reward_fn)
        reward_s += time.perf_counter() - started
        all_rewards += scores.rewards
        all_formats += scores.formats
        blocked += scores.blocked
        signal = tally.add(scores.rewards, n)
        groups = (pick_signal_groups(signal, want - tally.kept) if dynamic.enabled else list(range(len(picks))))
        if groups:
            index = torch.tensor([g * n + k for g in groups for k in range(n)], dtype=torch.long)
            kept_batches.append(batch.rows(index.to(batch.tokens.device)))
            kept_rewards += [scores.rewards[int(i)] for i in index]
            tally.kept += len(groups)
        if tally.kept >= want:
            break
    tally.capped = dynamic.enabled and tally.kept < want
    merged = concat_batches(kept_batches, ctx.stop.pad_id) if kept_batches else None
    return SampledStep(merged, kept_rewards, AnswerScores(all_rewards, all_formats, blocked), tally, rollout_s,
                       reward_s, generated, soft_steps)


def run_step(ctx: StepContext, rows: Sequence[PromptRow], step: int,
             sides: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Sample, score and update once; returns the step's metrics (``skipped`` when the loss was not finite).

    ``reward_mean``, ``reward_std`` and ``format_rate`` cover every answer sampled in the step; ``groups`` says how
    many groups carried a signal and how many the update trained on (no update when none did). ``sides`` are the
    rows' hindsight sides, for ``optim.prompt_draw: sides_balanced`` (:func:`sample_groups`).
    """
    cfg, n = ctx.cfg, ctx.cfg.rollout.group_size
    started = time.perf_counter()
    sampled = sample_groups(ctx, rows, step, sides)
    rollout_s, reward_s = sampled.rollout_s, sampled.reward_s
    rewards = torch.tensor(sampled.scores.rewards, dtype=torch.float32)
    batch = sampled.batch
    if batch is None:
        update: dict[str, Any] = {"skipped": False, "loss": None, "losses": [], "grad_norm": None, "kl": None,
                                  "clip_frac": None, "pg_loss": None}
        score_s, tokens = 0.0, 0
    else:
        device = next(ctx.model.parameters()).device
        advantages = grpo_advantages(torch.tensor(sampled.rewards, dtype=torch.float32), n).to(device)
        old, ref = _frozen_scores(ctx, batch)
        score_s = time.perf_counter() - started - rollout_s - reward_s
        update = _update(ctx, batch, advantages, old, ref)
        tokens = int(batch.mask.sum())
    step_s = time.perf_counter() - started
    return {
        "step": step + 1, "reward_mean": sampled.scores.mean,
        "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
        "format_rate": sampled.scores.format_rate, "blocked": sampled.scores.blocked, **update,
        "groups": sampled.tally.to_dict(),
        "answer_tokens": tokens,
        "soft_step_frac": sampled.generated_soft_steps / max(sampled.generated_tokens, 1),
        "tokens_per_s": sampled.generated_tokens / max(rollout_s, 1e-9), "lr": float(ctx.scheduler.get_last_lr()[0]),
        "timings": {"rollout_s": rollout_s, "reward_s": reward_s, "score_s": score_s,
                    "update_s": step_s - rollout_s - reward_s - score_s, "step_s": step_s},
        "gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
    }


def _micro_batches(batch: RolloutBatch, parts: int) -> list[Any]:
    return list(torch.arange(batch.size).chunk(min(parts, batch.size)))


def _frozen_scores(ctx: StepContext, batch: RolloutBatch) -> tuple[Any, Any]:
    """Old-policy scores, and reference scores (adapter disabled) when the KL term is on."""
    olds, refs = [], []
    with torch.no_grad():
        for index in _micro_batches(batch, ctx.cfg.optim.grad_accum):
            part = batch.rows(index)
            olds.append(step_scores(ctx.model, part, ctx.score_spec))
            if ctx.cfg.optim.kl_coef > 0:
                with ctx.model.disable_adapter():
                    refs.append(step_scores(ctx.model, part, ctx.score_spec))
    return torch.cat(olds), (torch.cat(refs) if refs else None)


def _update(ctx: StepContext, batch: RolloutBatch, advantages: Any, old: Any, ref: Any) -> dict[str, Any]:
    """``ppo_epochs`` optimizer updates with gradient accumulation, clipping and the NaN/inf guard."""
    total_tokens = float(batch.mask.sum().clamp(min=1))
    parts = _micro_batches(batch, ctx.cfg.optim.grad_accum)
    losses, grad_norms = [], []
    sums = {"pg": 0.0, "kl": 0.0, "clipped": 0.0, "tokens": 0.0}
    for _ in range(ctx.cfg.optim.ppo_epochs):
        ctx.optimizer.zero_grad(set_to_none=True)
        epoch_loss, finite = 0.0, True
        for index in parts:
            part = batch.rows(index)
            scores = step_scores(ctx.model, part, ctx.score_spec)
            loss, part_sums = policy_loss(scores, old[index], None if ref is None else ref[index],
                                          advantages[index], part.mask, ctx.loss_spec, total_tokens)
            if not bool(torch.isfinite(loss)):
                finite = False
                break
            loss.backward()
            epoch_loss += float(loss.detach())
            for key, value in part_sums.items():
                sums[key] += float(value)
        grad_norm = math.nan
        if finite:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(ctx.params, ctx.cfg.optim.max_grad_norm))
        if not finite or not math.isfinite(grad_norm):
            ctx.optimizer.zero_grad(set_to_none=True)
            return {"skipped": True, "loss": math.nan, "losses": losses, "grad_norm": grad_norm, "kl": math.nan,
                    "clip_frac": math.nan, "pg_loss": math.nan}
        ctx.optimizer.step()
        ctx.scheduler.step()
        losses.append(epoch_loss)
        grad_norms.append(grad_norm)
    tokens = max(sums["tokens"], 1.0)
    return {"skipped": False, "loss": losses[-1], "losses": losses, "grad_norm": grad_norms[-1],
            "kl": sums["kl"] / tokens, "clip_frac": sums["clipped"] / tokens, "pg_loss": sums["pg"] / tokens}


def validate(ctx: StepContext, rows: Sequence[PromptRow], sides: Sequence[str | None]) -> dict[str, float]:
    """Mean reward, its sides-balanced form and the format rate on the validation rows.

    ``run.val_decoding`` picks the decoding: ``discrete`` (as the advisor decodes; greedy when ``run.val_greedy``) or
    ``rollout`` (the run's own sampling, soft thinking included). Sampling uses a generator whose seed is the same
    at every validation, so successive figures differ only through the weights.

    Args:
        ctx: The run's step context.
        rows: The validation rows.
        sides: Each row's :func:`~tradelab.grpo.baselines.hindsight_side`, for ``val_reward_balanced``.
    """
    cfg = ctx.cfg
    if cfg.run.val_decoding == "rollout":
        spec, samples = sampling_spec(cfg, ctx.mode), cfg.run.val_samples
    else:
        greedy = cfg.run.val_greedy
        spec = SamplingSpec(temperature=cfg.rollout.temperature, top_k=cfg.rollout.top_k, top_p=cfg.rollout.top_p,
                            greedy=greedy)
        samples = 1 if greedy else cfg.run.val_samples
    device = next(ctx.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, 0, VAL_STREAM))
    all_rows = [row for row in rows for _ in range(samples)]
    all_sides = [side for side in sides for _ in range(samples)]
    texts: list[str] = []
    for start in range(0, len(all_rows), VAL_CHUNK_ROWS):
        chunk = all_rows[start:start + VAL_CHUNK_ROWS]
        batch = generate(ctx.model, [r.prompt_ids for r in chunk], spec, ctx.stop, generator)
        texts.extend(decode_answers(ctx.tokenizer, batch, ctx.stop))
    scores = score_answers(all_rows, texts, ctx.reward_fn)
    return {"val_reward_mean": scores.mean, "val_reward_balanced": sides_balanced_mean(scores.rewards, all_sides),
            "val_format_rate": scores.format_rate, "val_answers": len(texts)}
