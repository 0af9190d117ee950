"""Build :class:`tradelab.core.context.MarketContext` dicts from the env's precomputed tables (no look-ahead).

One flat function on the step path: every env step builds a context, so it avoids helper calls and numpy scalars.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tradelab.core import ACTIONS
from tradelab.core.context import MarketContext
from tradelab.core.tradesim import Position
from tradelab.env.account import Account
from tradelab.env.fastcopy import FastCopyDict
from tradelab.env.tables import TREND_NAMES, VOLATILITY_NAMES, BarTables

_TZ_BY_OFFSET: dict[int, timezone] = {}
_ALLOWED_BY_MASK: dict[tuple[bool, ...], tuple[str, ...]] = {}


def iso_timestamp(tables: BarTables, t: int) -> str:
    """Bar ``t``'s open time as ISO-8601 with its New York UTC offset, e.g. ``2024-03-11T09:30:00-04:00``."""
    cached = tables.iso_cache.get(t)
    if cached is not None:
        return cached
    offset = tables.utc_offset_minutes[t]
    tz = _TZ_BY_OFFSET.get(offset)
    if tz is None:
        tz = _TZ_BY_OFFSET.setdefault(offset, timezone(timedelta(minutes=offset)))
    text = tables.iso_cache[t] = datetime.fromtimestamp(tables.utc_seconds[t], tz).isoformat()
    return text


def allowed_names(mask: tuple[bool, ...]) -> list[str]:
    """Action names a mask allows, in id order."""
    names = _ALLOWED_BY_MASK.get(mask)
    if names is None:
        names = _ALLOWED_BY_MASK.setdefault(mask, tuple(a for a, ok in zip(ACTIONS, mask) if ok))
    return list(names)


def build_context(
    market: str,
    tables: BarTables,
    t: int,
    position: Position | None,
    account: Account,
    equity: float,
    trailing_drawdown_usd: float,
    point_value: float,
    mask: tuple[bool, ...],
) -> MarketContext:
    """The raw context at decision bar ``t`` (values from bars ``<= t`` only).

    The position is marked at bar ``t``'s close before exit costs; ``drawdown_buffer`` is ``equity`` above the
    trailing threshold ``peak - trailing_drawdown_usd``.
    """
    close = tables.close[t]
    if position is None:
        pos = {"side": "flat", "entry_price": None, "stop": None, "target": None, "trail_on": False,
               "unrealized_pnl": 0.0, "bars_in_trade": 0}
    else:
        pos = {"side": "long" if position.side == 1 else "short", "entry_price": position.entry_price,
               "stop": position.stop, "target": position.target, "trail_on": position.trail_on,
               "unrealized_pnl": position.side * (close - position.entry_price) * point_value,
               "bars_in_trade": position.bars_in_trade}
    trades = account.trades
    return FastCopyDict(  # type: ignore[return-value]
        market=market,
        bar_index=t,
        timestamp=iso_timestamp(tables, t),
        close=close,
        atr=tables.atr[t],
        trend=TREND_NAMES[tables.trend[t]],
        momentum=tables.rsi[t],
        volatility=VOLATILITY_NAMES[tables.volatility[t]],
        vwap_distance_atr=tables.vwap_distance_atr[t],
        return_5_bars=tables.return_5_bars[t],
        return_30_bars=tables.return_30_bars[t],
        minutes_to_close=tables.minutes_to_close[t],
        position=pos,
        account={
            "balance": account.balance,
            "peak": account.peak,
            "drawdown_buffer": equity - (account.peak - trailing_drawdown_usd),
            "consecutive_losses": account.consecutive_losses,
            "win_rate": account.wins / trades if trades else 0.0,
            "daily_pnl": account.daily_pnl,
        },
        recent_trades=list(account.recent_trades),
        allowed_actions=allowed_names(mask),
    )
