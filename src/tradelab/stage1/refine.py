"""Adapter refinement inside Stage 1: hindsight labels from resolved experience, weighted SFT of the LoRA adapter.

For each resolved record every allowed action is replayed over the record's forward window with
:func:`tradelab.core.replay.simulate_action` (same exit rules, costs and forced flatten as the env). The target answer
is the best action, with a confidence from its margin over the runner-up and a reason templated from the context (never
from the forward window: the model must learn to answer from what it can see). The example's weight is the best
action's advantage over the advised one in R (a failed or disallowed answer counts as the worst allowed action),
floored at ``refinement.min_weight`` and capped at :data:`MAX_WEIGHT_R`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from tradelab.core import ACTIONS
from tradelab.core.ground_truth import build_ground_truth
from tradelab.core.parse import format_advice, parse_advice
from tradelab.core.replay import Counterfactual
from tradelab.core.tradesim import is_entry_decision

log = logging.getLogger(__name__)

MAX_WEIGHT_R = 3.0
"""Weights are capped here so one lucky window cannot dominate a refinement batch."""

SIDES = ("BUY", "SELL")
"""The entries ``refinement.weights: sides`` balances against each other."""


def score_actions(record: Mapping[str, Any]) -> dict[str, float] | None:
    """R-multiple of every allowed action over the record's forward window, or None without a window.

    The same replay the reward scores with (:class:`tradelab.core.replay.Counterfactual` over the record's ground
    truth).
    """
    if not record["forward"].get("open"):
        return None
    return Counterfactual(build_ground_truth(dict(record))).r_multiples()


def hindsight_reason(context: Mapping[str, Any], action: str) -> str:
    """A short reason for ``action`` built only from values visible at the decision bar."""
    side = context["position"]["side"]
    where = "flat" if side == "flat" else f"in a {side} trade"
    return (f"{where}, trend {context['trend']}, rsi {float(context['momentum']):.0f}, "
            f"vwap {float(context['vwap_distance_atr']):+.1f} atr, volatility {context['volatility']}: "
            f"{action.lower().replace('_', ' ')} fits best")


def hindsight_example(record: Mapping[str, Any], min_weight: float) -> tuple[list[dict[str, str]], str, float] | None:
    """``(messages, target, weight)`` for one resolved record, or None when it teaches nothing.

    Args:
        record: An experience record with a forward window.
        min_weight: Floor of the weight; with 0, records whose advice was already best are skipped.
    """
    scores = score_actions(record)
    if not scores:
        return None
    ranked = sorted(scores, key=lambda a: (-scores[a], ACTIONS.index(a)))
    best = ranked[0]
    advice = record["advice"]
    advised = advice.get("action") if advice.get("parse_ok") and not advice.get("error") else None
    baseline = scores[advised] if advised in scores else min(scores.values())
    weight = min(max(scores[best] - baseline, min_weight), MAX_WEIGHT_R)
    if weight <= 0.0:
        return None
    margin = scores[best] - scores[ranked[1]] if len(ranked) > 1 else 1.0
    confidence = 0.5 + 0.45 * math.tanh(max(margin, 0.0))
    target = format_advice(best, confidence, hindsight_reason(record["market_context"], best))
    return [dict(m) for m in record["prompt"]], target, float(weight)


def balance_by_action(actions: Sequence[str], weights: Sequence[float],
                      among: Collection[str] | None = None) -> list[float]:
    """Rescale weights so every target action in ``among`` carries the same total weight (their total is kept).

    Hindsight labels over a stretch of bars follow its drift: most of them can name one side. Trained on the raw
    weights, a small advisor settles on that side for every prompt (a constant answer, blind to the prompt) instead
    of telling up from down; with each action's total weight equal, the constant answer no longer pays.

    Args:
        actions: Each example's target action.
        weights: Each example's weight.
        among: The actions balanced against each other; the others keep their weights. None balances every action.
            An action of ``among`` without examples is left out of the balance.
    """
    totals: dict[str, float] = {}
    for action, weight in zip(actions, weights, strict=True):
        if among is None or action in among:
            totals[action] = totals.get(action, 0.0) + weight
    share = sum(totals.values()) / len(totals) if totals else 0.0
    return [weight * share / totals[action] if action in totals else weight
            for action, weight in zip(actions, weights)]


def refine_adapter(
    records: Sequence[Mapping[str, Any]],
    config: Any,
    *,
    base_dir: Path,
    init_adapter: Path,
    out_dir: Path,
    seed: int,
    epochs: int,
) -> dict[str, Any]:
    """Train the adapter on hindsight examples from ``records`` and save it to ``out_dir`` (PEFT format).

    Args:
        records: Resolved experience records (most recent last).
        config: The whole config (``llm`` for training, ``stage1.refinement.min_weight``, ``weights`` and ``decisions``).
        base_dir: The base model directory.
        init_adapter: Adapter to continue from (the warm-started or the previous refined one).
        out_dir: Where the refined adapter goes (replaced atomically).
        seed: Training seed.
        epochs: Passes over the examples.

    Returns:
        ``{examples, mean_weight, seconds, adapter_path, peak_memory_mb}``; ``examples == 0`` means nothing was
        trained. ``peak_memory_mb`` is the training loop's peak (:class:`tradelab.advisor.memory.PeakMemory`).
    """
    from tradelab.advisor.train import SFTExample, read_training_summary, train_adapter

    started = time.perf_counter()
    if config.stage1.refinement.decisions == "entries":
        records = [r for r in records if is_entry_decision(r)]
    examples = []
    for record in records:
        made = hindsight_example(record, config.stage1.refinement.min_weight)
        if made is not None:
            examples.append(SFTExample(messages=made[0], target=made[1], weight=made[2]))
    if not examples:
        return {"examples": 0, "mean_weight": 0.0, "seconds": 0.0, "adapter_path": str(init_adapter),
                "peak_memory_mb": 0.0}
    scheme = config.stage1.refinement.weights
    if scheme != "advantage":
        examples = [SFTExample(messages=e.messages, target=e.target, weight=1.0) for e in examples]
    if scheme != "uniform":
        actions = [str(parse_advice(e.target).action) for e in examples]
        balanced = balance_by_action(actions, [e.weight for e in examples],
                                     among=SIDES if scheme == "sides" else None)
        examples = [SFTExample(messages=e.messages, target=e.target, weight=w) for e, w in zip(examples, balanced)]
    train_adapter(base_dir, examples, config, out_dir=out_dir, seed=seed, init_adapter=init_adapter, epochs=epochs)
    mean_weight = sum(e.weight for e in examples) / len(examples)
    seconds = round(time.perf_counter() - started, 3)
    log.info("refined adapter on %d examples (mean weight %.3f) in %.1fs -> %s", len(examples), mean_weight,
             seconds, out_dir)
    return {"examples": len(examples), "mean_weight": round(mean_weight, 4), "seconds": seconds,
            "adapter_path": str(out_dir), "peak_memory_mb": read_training_summary(out_dir).get("peak_memory_mb", 0.0)}
