"""The rule-based teacher: a deterministic function of the market context that writes contract-form answers.

The warm start trains the advisor's adapter on these answers so that a fresh model learns the response format (and
a sensible default behaviour) before any reinforcement. Only actions the mask allows are ever chosen. Pure Python.
"""

from __future__ import annotations

from tradelab.core.context import MarketContext
from tradelab.core.parse import format_advice


def _favourable_move_atr(context: MarketContext) -> float:
    """Open-trade excursion in ATRs, positive when the trade is in profit."""
    position = context["position"]
    entry = position["entry_price"]
    if position["side"] == "flat" or entry is None or context["atr"] <= 0:
        return 0.0
    sign = 1.0 if position["side"] == "long" else -1.0
    return sign * (context["close"] - entry) / context["atr"]


def _flat_decision(context: MarketContext) -> tuple[str, float, str]:
    """Follow the trend when there is one; its confidence grows with the cues that agree with it.

    The teacher takes a side whenever the trend does: a warm start whose flat answers are mostly HOLD teaches the
    model HOLD as its default, and such an advisor never trades and cannot be told a good entry from a bad one.
    """
    if context["minutes_to_close"] <= 30:
        return "HOLD", 0.7, "too close to the session end"
    if context["account"]["drawdown_buffer"] < 500.0:
        return "HOLD", 0.75, "drawdown buffer is thin"
    trend = context["trend"]
    if trend not in ("up", "down"):
        return "HOLD", 0.5, "no trend"
    sign = 1.0 if trend == "up" else -1.0
    cues = ((context["momentum"] - 50.0) * sign > 0, context["vwap_distance_atr"] * sign > 0,
            context["return_30_bars"] * sign > 0)
    agree = sum(cues)
    action = "BUY" if sign > 0 else "SELL"
    return action, 0.55 + 0.1 * agree, f"{trend}trend, {agree} of 3 cues agree"


def _trade_decision(context: MarketContext) -> tuple[str, float, str]:
    position = context["position"]
    move = _favourable_move_atr(context)
    if position["trail_on"] and move < 0.5:
        return "DISABLE_TRAIL", 0.55, "trade gave back its gain"
    if move >= 1.0 and "MOVE_TO_BE" in context["allowed_actions"]:
        return "MOVE_TO_BE", 0.7, "protect open profit"
    if move >= 1.5 and not position["trail_on"]:
        return "ENABLE_TRAIL", 0.65, "let the winner run"
    if move < 0:
        return "HOLD", 0.5, "trade is under water, stop in place"
    return "HOLD", 0.6, "trade is working"


def teacher_decision(context: MarketContext) -> tuple[str, float, str]:
    """The teacher's ``(action, confidence, reason)`` for a context; the action is always allowed.

    When the preferred action is masked, HOLD is used if allowed, else the first allowed action.
    """
    allowed = list(context["allowed_actions"])
    if context["position"]["side"] == "flat":
        action, confidence, reason = _flat_decision(context)
    else:
        action, confidence, reason = _trade_decision(context)
    if action not in allowed:
        fallback = "HOLD" if "HOLD" in allowed or not allowed else allowed[0]
        action, confidence, reason = fallback, 0.5, f"{action.lower()} is not allowed now"
    return action, round(min(max(confidence, 0.0), 1.0), 2), reason


def teacher_response(context: MarketContext) -> str:
    """The teacher's answer in the contract form ``ACTION | confidence | reason``."""
    return format_advice(*teacher_decision(context))
