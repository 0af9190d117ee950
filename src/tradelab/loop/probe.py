"""Holdout probes: advisor prompts built from holdout bars, scored with the Stage 2 reward and by direction.

Training experience never reaches these prompts: they are cut from the holdout split the evaluation uses, at
seeded bars where the account is flat and both entries are allowed, so every probe asks the same question ("which
way, if at all?") that the planted edge answers. Each prompt carries the reward's ground truth (its forward window,
the env's exit rules and costs), so an answer gets the exact score GRPO would give it, and the realised direction
over ``hit_horizon_bars``.

Pure numpy plus the env and the reward; the advisor is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.advisor.prompts import build_messages
from tradelab.core.ground_truth import build_ground_truth, dumps
from tradelab.core.parse import format_advice, parse_advice
from tradelab.core.records import ExperienceRecord
from tradelab.core.reward import compute_score
from tradelab.evaluation.stats import block_bootstrap_ci, wilson_ci

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.evaluation.starts import Window
    from tradelab.marketdata.arrays import MarketArrays

Messages = list[dict[str, str]]

CANDIDATE_FACTOR = 4
"""Seeded candidate bars drawn per wanted prompt; bars where an entry is not allowed are skipped."""


@dataclass(frozen=True)
class ProbeSet:
    """The holdout prompts one loop measures every adapter on.

    Attributes:
        bar_indices: Decision bar of each prompt (absolute index, ascending).
        contexts: The env's market context at each decision bar (flat, BUY and SELL allowed).
        messages: The advisor's chat messages for each context.
        ground_truths: The reward's ground-truth JSON for each prompt.
        moves_points: ``close[t + H] - close[t]`` per prompt, ``H = hit_horizon_bars`` (never shown to anyone).
        session_ids: Session of each decision bar, for day-level resampling.
    """

    bar_indices: list[int]
    contexts: list[dict[str, Any]]
    messages: list[Messages]
    ground_truths: list[str]
    moves_points: np.ndarray
    session_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.bar_indices)


def build_probe_set(
    root: Any, market: str, config: TradelabConfig, arrays: MarketArrays, holdout: Window, *, n_prompts: int,
    seed: int, split: str = "holdout",
) -> ProbeSet:
    """Draw up to ``n_prompts`` flat decision bars from ``holdout`` and build their prompts and ground truths.

    Args:
        root: Workspace root.
        market: Market name.
        config: The whole config.
        arrays: The market arrays, with ``split_index`` at the holdout start.
        holdout: The holdout window.
        n_prompts: Prompts wanted.
        seed: Seed of the bar draw (the same seed gives the same prompts).
        split: The env split ``holdout`` lies in (``holdout``; ``train`` only for labelled training prompts).
    """
    from tradelab.env import make_env
    from tradelab.stage1.wiring import experience_terms

    horizon = config.evaluation.hit_horizon_bars
    forward_bars = config.env.forward_horizon_bars
    last = holdout.end_index - max(horizon, forward_bars) - 2
    first = holdout.start_index
    if last <= first:
        return ProbeSet([], [], [], [], np.zeros(0), np.zeros(0, dtype=np.int64))
    env = make_env(market, root, split=split, seed=seed, config=config, arrays=arrays)
    slicer, contract, rules = experience_terms(market, config, arrays, end_index=holdout.end_index)
    rng = np.random.default_rng(seed)
    n_candidates = min(last - first, n_prompts * CANDIDATE_FACTOR)
    candidates = np.sort(rng.choice(np.arange(first, last), size=n_candidates, replace=False))
    bars: list[int] = []
    contexts: list[dict[str, Any]] = []
    truths: list[str] = []
    usable = []
    for bar in candidates:
        _, info = env.reset(options={"start_index": int(bar)})
        if {"BUY", "SELL"} <= set(info["market_context"]["allowed_actions"]):
            usable.append((int(bar), info["market_context"]))
    if len(usable) > n_prompts:  # spread over the whole window, not its first sessions
        keep = np.sort(rng.choice(len(usable), size=n_prompts, replace=False))
        usable = [usable[i] for i in keep]
    dataset = config.soft_grpo.dataset
    blocklist, weights = dataset.blocklist, dataset.reward_weights.model_dump()
    for bar, context in usable:
        record: ExperienceRecord = {
            "market": market, "timestamp": context["timestamp"], "forward": slicer.forward(int(bar)),
            "contract": contract, "rules": {**rules, "flatten_after_bars": slicer.flatten_after_bars(int(bar))},
            "allowed_actions": list(context["allowed_actions"]), "market_context": context,
            "position": context["position"], "advice": {}, "outcome": None,
        }
        bars.append(int(bar))
        contexts.append(context)
        truths.append(dumps(build_ground_truth(record, blocklist=blocklist, weights=weights)))
    index = np.asarray(bars, dtype=np.int64)
    moves = arrays.close[index + horizon] - arrays.close[index] if len(index) else np.zeros(0)
    return ProbeSet(
        bar_indices=bars, contexts=contexts, messages=[build_messages(c, config) for c in contexts],
        ground_truths=truths, moves_points=np.asarray(moves, dtype=np.float64),
        session_ids=np.asarray(arrays.session_id[index], dtype=np.int64),
    )


def momentum_rule_answers(probe: ProbeSet) -> list[str]:
    """The best simple rule on the planted-edge market: follow the sign of the prompt's 5-bar return."""
    answers = []
    for context in probe.contexts:
        action = "BUY" if context["return_5_bars"] > 0 else "SELL"
        answers.append(format_advice(action, 0.6, "follow the 5-bar move"))
    return answers


def score_answers(probe: ProbeSet, answers: list[str], *, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Direction hit rate (all, up moves, down moves), mean reward, parse rate and non-HOLD share, with intervals.

    A hit is a BUY before an up move or a SELL before a down move over ``hit_horizon_bars``; HOLD and unparsed
    answers are not directional and count only in ``non_hold_share``; flat moves count nowhere. Rates carry Wilson
    intervals; the mean reward a day-block bootstrap interval (prompts of one session are not independent).

    ``sides_reward`` is the mean reward of the same actions stated without a confidence (the reward scores them at
    its neutral confidence): what the sides alone earn. Its difference from ``holdout_reward`` is what the stated
    confidences add or cost through the reward's calibration term, so a gap to another advisor can be split into
    sides and confidence. Unparsed and blocked answers keep their own reward there.

    Returns:
        Figures with ``*_ci`` as ``[low, high]`` or None when the sample is too small, plus the per-prompt
        ``rewards`` and ``actions`` (for paired comparisons between adapters).
    """
    if len(answers) != len(probe):
        raise ValueError(f"{len(answers)} answers for {len(probe)} probe prompts")
    actions: list[str | None] = []
    rewards = np.zeros(len(probe))
    sides_rewards = np.zeros(len(probe))
    parsed = 0
    for i, (answer, truth) in enumerate(zip(answers, probe.ground_truths)):
        advice = parse_advice(answer)
        parsed += bool(advice.parse_ok)
        actions.append(advice.action if advice.parse_ok else None)
        data_source = f"tradelab/{probe.contexts[i]['market']}"
        scored = compute_score(data_source, answer, truth)
        rewards[i] = scored["score"]
        restate = advice.parse_ok and advice.action and advice.confidence is not None and not scored["blocked"]
        sides_rewards[i] = compute_score(data_source, advice.action, truth)["score"] if restate else scored["score"]
    moves = probe.moves_points
    directional = np.array([a in ("BUY", "SELL") for a in actions], dtype=bool)
    says_up = np.array([a == "BUY" for a in actions], dtype=bool)
    up, down = moves > 0, moves < 0
    hits = int(np.sum(directional & ((says_up & up) | (~says_up & down))))
    counted = int(np.sum(directional & (up | down)))
    up_n, up_hits = int(np.sum(directional & up)), int(np.sum(says_up & up))
    down_n, down_hits = int(np.sum(directional & down)), int(np.sum(directional & ~says_up & down))
    n = len(probe)
    return {
        "prompts": n,
        "parse_rate": _rate(parsed, n), "parse_rate_ci": _ci(wilson_ci(parsed, n, level=level)),
        "non_hold_share": _rate(int(directional.sum()), n),
        "non_hold_share_ci": _ci(wilson_ci(int(directional.sum()), n, level=level)),
        "hit_rate": _rate(hits, counted), "hit_rate_ci": _ci(wilson_ci(hits, counted, level=level)),
        "directional": counted,
        "hit_rate_up": _rate(up_hits, up_n), "hit_rate_up_ci": _ci(wilson_ci(up_hits, up_n, level=level)),
        "hit_rate_down": _rate(down_hits, down_n),
        "hit_rate_down_ci": _ci(wilson_ci(down_hits, down_n, level=level)),
        **balanced_hit_rate(up_hits, up_n, down_hits, down_n, level=level),
        "holdout_reward": float(rewards.mean()) if n else None,
        "holdout_reward_ci": _ci(day_bootstrap_ci(rewards, probe.session_ids, level=level, seed=seed)),
        "sides_reward": float(sides_rewards.mean()) if n else None,
        "rewards": rewards.tolist(),
        "actions": actions,
    }


def answer_rows(probe: ProbeSet, texts: list[str], figures: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per prompt for an answers file: the bar, its time, the answer, its action and reward, the move."""
    return [{"bar_index": bar, "timestamp": context["timestamp"], "answer": text, "action": action, "reward": reward,
             "move_points": float(move)}
            for bar, context, text, action, reward, move in zip(probe.bar_indices, probe.contexts, texts,
                                                                figures["actions"], figures["rewards"],
                                                                probe.moves_points, strict=True)]


def balanced_hit_rate(up_hits: int, up_n: int, down_hits: int, down_n: int, *, level: float = 0.95) -> dict[str, Any]:
    """The mean of the up-move and down-move hit rates, with an Agresti-Caffo interval.

    The plain hit rate of a constant answer is the share of moves that went its way, so on a holdout that drifts it
    can look like skill (always SELL on a falling stretch). The balanced rate gives any constant answer 0.5 and
    rises only when the advisor tells up from down. The interval is the normal one of the mean of two independent
    proportions, each with one success and one failure added (Agresti and Caffo, 2000), clipped to [0, 1].

    Returns:
        ``{"balanced_hit_rate", "balanced_hit_rate_ci"}``; both None unless each side has a directional answer.
    """
    if up_n == 0 or down_n == 0:
        return {"balanced_hit_rate": None, "balanced_hit_rate_ci": None}
    rate = 0.5 * (up_hits / up_n + down_hits / down_n)
    up_adj, down_adj = (up_hits + 1) / (up_n + 2), (down_hits + 1) / (down_n + 2)
    centre = 0.5 * (up_adj + down_adj)
    spread = 0.5 * math.sqrt(up_adj * (1 - up_adj) / (up_n + 2) + down_adj * (1 - down_adj) / (down_n + 2))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return {"balanced_hit_rate": rate,
            "balanced_hit_rate_ci": [max(0.0, centre - z * spread), min(1.0, centre + z * spread)]}


def day_bootstrap_ci(
    values: np.ndarray, session_ids: np.ndarray, *, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Interval of the per-prompt mean, resampling whole sessions in blocks (prompts of one day move together).

    Each session contributes its sum and its count, so the ratio of resampled sums is the resampled mean.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    _, inverse = np.unique(np.asarray(session_ids), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    mean_per_prompt = float(values.mean())
    # Per-day totals centred on the overall mean: their mean is zero, and its interval is the mean's error.
    centred = (sums - mean_per_prompt * counts) / counts.mean()
    interval = block_bootstrap_ci(centred, statistic="mean", level=level, seed=seed)
    if interval is None:
        return None
    return mean_per_prompt + interval[0], mean_per_prompt + interval[1]


def answer_logprobs(advisor: Any, messages: list[Messages], answers: list[str]) -> list[float]:
    """Mean per-token log-probability of each answer under the advisor's current weights.

    Used to prove an adapter really reached the advisor: two different adapters give different log-probs for the
    same answers on the same prompts, even when their greedy answers coincide.
    """
    import torch

    from tradelab.advisor.prompts import render_chat

    tokenizer, model = advisor.tokenizer, advisor.model
    out: list[float] = []
    with torch.inference_mode():
        for msgs, answer in zip(messages, answers, strict=True):
            prompt_ids = tokenizer(render_chat(tokenizer, msgs), add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            if not answer_ids:
                out.append(math.nan)
                continue
            ids = torch.tensor([prompt_ids + answer_ids], device=advisor.device)
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].float()
            logp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, len(prompt_ids):].unsqueeze(1))
            out.append(float(logp.mean()))
    return out


def side_margins(advisor: Any, probe: ProbeSet) -> np.ndarray:
    """Per prompt, the advisor's mean log-probability of answering ``BUY`` minus that of ``SELL``.

    A greedy answer only says which side wins; the margin also shows whether the advisor ranks the prompts by a cue
    while an offset (a drift it learned) keeps one side winning everywhere (compare with
    :func:`tradelab.evaluation.stats.rank_auc`).
    """
    buy = answer_logprobs(advisor, probe.messages, ["BUY"] * len(probe))
    sell = answer_logprobs(advisor, probe.messages, ["SELL"] * len(probe))
    return np.asarray(buy, dtype=np.float64) - np.asarray(sell, dtype=np.float64)


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def _ci(interval: tuple[float, float] | None) -> list[float] | None:
    return [float(interval[0]), float(interval[1])] if interval is not None else None
