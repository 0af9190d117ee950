"""The raw market context: what the env exposes at a decision bar and what advisor prompts are built from.

The env puts one of these in ``info["market_context"]`` on every step and reset. Every value is computed from bars at
or before the decision bar (no look-ahead). Experience records store it verbatim as ``market_context``. Pure Python:
the reward and the parser import nothing heavy.
"""

from __future__ import annotations

from typing import TypedDict


class PositionContext(TypedDict):
    side: str                  # "flat", "long" or "short"
    entry_price: float | None
    stop: float | None
    target: float | None
    trail_on: bool
    unrealized_pnl: float      # USD, marked at the decision bar's close, before exit costs
    bars_in_trade: int


class AccountContext(TypedDict):
    balance: float             # USD, realised
    peak: float                # USD, highest end-of-bar equity so far (Apex trailing reference)
    drawdown_buffer: float     # USD left before the trailing drawdown is breached
    consecutive_losses: int
    win_rate: float            # over closed trades this episode; 0.0 before the first trade
    daily_pnl: float           # USD realised this session


class MarketContext(TypedDict):
    market: str
    bar_index: int             # index into the market's bar arrays
    timestamp: str             # ISO-8601, America/New_York
    close: float
    atr: float                 # points
    trend: str                 # "up", "down" or "flat" (e.g. EMA20 vs EMA50 slope)
    momentum: float            # e.g. RSI(14), 0-100
    volatility: str            # "low", "normal" or "high" (ATR vs its rolling median)
    vwap_distance_atr: float   # (close - session VWAP) / ATR
    return_5_bars: float       # fraction
    return_30_bars: float      # fraction
    minutes_to_close: int
    position: PositionContext
    account: AccountContext
    recent_trades: list[dict]  # last few closed trades: {side, pnl, r_multiple, exit_reason}
    allowed_actions: list[str] # names the mask allows at this bar
