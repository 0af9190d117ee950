"""Random but internally consistent market contexts, for the tokenizer corpus, the warm start, tests and benches.

The contexts have the exact shape of :class:`tradelab.core.context.MarketContext`, with the allowed actions derived from
the position the way the env's mask does (flat: HOLD/BUY/SELL before the entry cut-off; in a trade: HOLD, MOVE_TO_BE
while the stop is not yet at break-even, and ENABLE_TRAIL or DISABLE_TRAIL by the trail state). Pure numpy.
"""

from __future__ import annotations

import numpy as np

from tradelab.core.context import MarketContext, PositionContext

_MARKETS: dict[str, tuple[float, float]] = {"NQ": (18000.0, 0.25), "ES": (5000.0, 0.25), "CL": (75.0, 0.01)}
_EXITS = ("stop", "target", "trail", "breakeven", "flatten")


def _round_tick(price: float, tick: float) -> float:
    return round(round(price / tick) * tick, 6)


def _position(rng: np.random.Generator, close: float, atr: float, tick: float) -> PositionContext:
    side = str(rng.choice(["flat", "long", "short"], p=[0.5, 0.25, 0.25]))
    if side == "flat":
        return PositionContext(side="flat", entry_price=None, stop=None, target=None, trail_on=False,
                               unrealized_pnl=0.0, bars_in_trade=0)
    sign = 1.0 if side == "long" else -1.0
    move_atr = float(rng.normal(0.3, 1.2))
    entry = _round_tick(close - sign * move_atr * atr, tick)
    risk = 1.5 * atr
    at_be = bool(rng.random() < 0.3) and move_atr > 0.5
    stop = _round_tick(entry + sign * tick if at_be else entry - sign * risk, tick)
    target = _round_tick(entry + sign * 2.0 * risk, tick)
    point_value = 20.0
    return PositionContext(
        side=side, entry_price=entry, stop=stop, target=target, trail_on=bool(rng.random() < 0.25),
        unrealized_pnl=round(sign * (close - entry) * point_value, 2), bars_in_trade=int(rng.integers(1, 120)),
    )


def _allowed(position: PositionContext, minutes_to_close: int) -> list[str]:
    if position["side"] == "flat":
        return ["HOLD"] if minutes_to_close <= 25 else ["HOLD", "BUY", "SELL"]
    allowed = ["HOLD"]
    entry, stop = position["entry_price"], position["stop"]
    sign = 1.0 if position["side"] == "long" else -1.0
    if entry is not None and stop is not None and sign * (stop - entry) < 0:
        allowed.append("MOVE_TO_BE")
    allowed.append("DISABLE_TRAIL" if position["trail_on"] else "ENABLE_TRAIL")
    return allowed


def _recent_trades(rng: np.random.Generator) -> list[dict]:
    trades = []
    for _ in range(int(rng.integers(0, 4))):
        r_multiple = round(float(rng.normal(0.1, 1.2)), 2)
        trades.append({"side": str(rng.choice(["long", "short"])), "pnl": round(r_multiple * 300.0, 2),
                       "r_multiple": r_multiple, "exit_reason": str(rng.choice(_EXITS))})
    return trades


def random_context(rng: np.random.Generator, *, bar_index: int = 0) -> MarketContext:
    """One random :class:`MarketContext` (values plausible for 1-minute index futures).

    Args:
        rng: Source of randomness (seeded by the caller).
        bar_index: Value stored as ``bar_index``.
    """
    market = str(rng.choice(list(_MARKETS)))
    base, tick = _MARKETS[market]
    close = _round_tick(base * float(np.exp(rng.normal(0.0, 0.05))), tick)
    atr = round(base * float(rng.uniform(0.0002, 0.0012)), 4)
    minute = int(rng.integers(9 * 60 + 31, 16 * 60))
    minutes_to_close = 16 * 60 - minute
    position = _position(rng, close, atr, tick)
    balance = round(50000.0 + float(rng.normal(0.0, 800.0)), 2)
    peak = round(max(balance, 50000.0) + float(rng.uniform(0.0, 600.0)), 2)
    return MarketContext(
        market=market, bar_index=bar_index,
        timestamp=f"2024-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}T{minute // 60:02d}:"
                  f"{minute % 60:02d}:00-05:00",
        close=close, atr=atr,
        trend=str(rng.choice(["up", "down", "flat"])),
        momentum=round(float(np.clip(rng.normal(50.0, 15.0), 1.0, 99.0)), 2),
        volatility=str(rng.choice(["low", "normal", "high"], p=[0.25, 0.5, 0.25])),
        vwap_distance_atr=round(float(rng.normal(0.0, 1.2)), 3),
        return_5_bars=round(float(rng.normal(0.0, 0.0015)), 6),
        return_30_bars=round(float(rng.normal(0.0, 0.004)), 6),
        minutes_to_close=minutes_to_close,
        position=position,
        account={"balance": balance, "peak": peak, "drawdown_buffer": round(2500.0 - (peak - balance), 2),
                 "consecutive_losses": int(rng.integers(0, 4)), "win_rate": round(float(rng.uniform(0, 1)), 3),
                 "daily_pnl": round(float(rng.normal(0.0, 400.0)), 2)},
        recent_trades=_recent_trades(rng),
        allowed_actions=_allowed(position, minutes_to_close),
    )


def random_contexts(n: int, seed: int) -> list[MarketContext]:
    """``n`` random contexts; the same ``(n, seed)`` always gives the same list."""
    rng = np.random.default_rng(seed)
    return [random_context(rng, bar_index=i) for i in range(n)]
