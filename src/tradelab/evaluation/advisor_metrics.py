"""Advisor metrics: parse rate, agreement with the policy, direction hit rate, calibration and veto rate.

Each advice the advisor gave during an episode is an :class:`AdviceRecord`. Directional advice (BUY or SELL) is
scored against the forward return over ``horizon_bars`` (evaluation may look ahead; the agents never do): a BUY hits
when the close ``horizon_bars`` later is higher, a SELL when it is lower. Calibration is the Brier score of the stated
confidence as the probability of a hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab.core import ACTION_IDS
from tradelab.core.parse import ERROR_DISALLOWED

ADVISOR_KEYS: tuple[str, ...] = (
    "advice_count", "parse_rate", "agreement_with_ppo", "veto_rate", "directional_advice", "hit_rate",
    "hit_rate_up", "hit_rate_down", "up_moves", "down_moves", "brier_score",
)
"""Keys of :func:`advisor_metrics`, in report order."""

_BUY, _SELL = ACTION_IDS["BUY"], ACTION_IDS["SELL"]


@dataclass(frozen=True)
class AdviceRecord:
    """One advice at a decision bar.

    Attributes:
        bar_index: The decision bar.
        action_id: Advised action id, or ``None`` when the reply did not parse.
        confidence: Stated confidence in [0, 1], or ``None``.
        parse_ok: Whether the reply parsed.
        allowed: Whether the mask allowed the advised action (False = the risk veto blocked it).
        taken_action_id: What the agent actually did at that bar.
    """

    bar_index: int
    action_id: int | None
    confidence: float | None
    parse_ok: bool
    allowed: bool
    taken_action_id: int


def advice_record(bar_index: int, advice: dict[str, Any], mask: np.ndarray, taken_action_id: int) -> AdviceRecord:
    """Build a record from an advice dict (``action_id``, ``confidence``, ``parse_ok``, ``error``) and the env's mask.

    The advice counts as vetoed when the env's mask forbids its action or the advisor flagged it
    ``disallowed_action`` against the (possibly vetoed) actions the agent offered it.
    """
    parse_ok = bool(advice.get("parse_ok"))
    action_id = advice.get("action_id") if parse_ok else None
    confidence = advice.get("confidence") if parse_ok else None
    # The agent's own veto can forbid more than the env's mask; the advisor flags that as a disallowed action.
    allowed = action_id is not None and bool(mask[int(action_id)]) and advice.get("error") != ERROR_DISALLOWED
    return AdviceRecord(int(bar_index), None if action_id is None else int(action_id),
                        None if confidence is None else float(confidence), parse_ok, allowed, int(taken_action_id))


def _directional(records: Sequence[AdviceRecord], close: np.ndarray, horizon_bars: int) -> tuple[np.ndarray, ...]:
    """Arrays (is_buy, forward_return, confidence) of parsed BUY/SELL advice with a full forward window."""
    last = len(close) - horizon_bars
    rows = [r for r in records if r.parse_ok and r.action_id in (_BUY, _SELL) and r.bar_index < last]
    is_buy = np.array([r.action_id == _BUY for r in rows], dtype=bool)
    forward = np.array([close[r.bar_index + horizon_bars] / close[r.bar_index] - 1.0 for r in rows], dtype=np.float64)
    confidence = np.array([np.nan if r.confidence is None else r.confidence for r in rows], dtype=np.float64)
    return is_buy, forward, confidence


def _mean(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def advisor_metrics(
    records: Sequence[AdviceRecord], close: np.ndarray, *, horizon_bars: int, has_policy: bool
) -> dict[str, float | int | None]:
    """Score an agent's advice.

    Args:
        records: Every advice the agent received, in order.
        close: The market's close column (for forward returns).
        horizon_bars: Forward bars for the direction score.
        has_policy: True when a policy chose the actions (hybrid), so agreement with it is meaningful; the
            advisor-alone agent gets ``agreement_with_ppo = None``.

    Returns:
        The keys of :data:`ADVISOR_KEYS`. ``hit_rate_up`` is the share of directional advice given before an up move
        that said BUY; ``hit_rate_down`` the share given before a down move that said SELL. Advice before an
        unchanged close counts as a miss in ``hit_rate`` and in neither split. Rates over nothing are ``None``.
    """
    parsed = [r for r in records if r.parse_ok]
    is_buy, forward, confidence = _directional(records, close, horizon_bars)
    hit = np.where(is_buy, forward > 0, forward < 0)
    up, down = forward > 0, forward < 0
    scored = ~np.isnan(confidence)
    agree = np.array([r.action_id == r.taken_action_id for r in parsed], dtype=bool)
    return {
        "advice_count": len(records),
        "parse_rate": len(parsed) / len(records) if records else None,
        "agreement_with_ppo": _mean(agree) if has_policy else None,
        "veto_rate": _mean(np.array([not r.allowed for r in parsed], dtype=bool)),
        "directional_advice": int(is_buy.size),
        "hit_rate": _mean(hit),
        "hit_rate_up": _mean(is_buy[up]),
        "hit_rate_down": _mean(~is_buy[down]),
        "up_moves": int(up.sum()),
        "down_moves": int(down.sum()),
        "brier_score": float(np.mean((confidence[scored] - hit[scored]) ** 2)) if scored.any() else None,
    }


def calibration_table(
    records: Sequence[AdviceRecord], close: np.ndarray, *, horizon_bars: int, bins: int
) -> list[dict[str, float | int | None]]:
    """Reliability table of directional advice: per confidence bin, mean confidence, hit frequency and count."""
    is_buy, forward, confidence = _directional(records, close, horizon_bars)
    hit = np.where(is_buy, forward > 0, forward < 0)
    scored = ~np.isnan(confidence)
    confidence, hit = confidence[scored], hit[scored]
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        sel = which == b
        table.append({
            "bin_low": float(edges[b]), "bin_high": float(edges[b + 1]), "count": int(sel.sum()),
            "mean_confidence": float(confidence[sel].mean()) if sel.any() else None,
            "hit_frequency": float(hit[sel].mean()) if sel.any() else None,
        })
    return table
