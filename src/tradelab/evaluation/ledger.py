"""Trade-ledger metrics and rule compliance.

A :class:`Trade` is one closed round trip built from the env's ``entry``/``exit`` events. Ledger metrics describe the
trades themselves; compliance metrics check the account rules from the per-bar path of position and equity, so a
broken env rule shows up here instead of in a flattering P&L.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LEDGER_KEYS: tuple[str, ...] = (
    "trades", "win_rate", "profit_factor", "expectancy_r", "expectancy_usd", "avg_bars_held", "exposure", "turnover",
    "long_trades", "short_trades",
)
"""Keys of :func:`ledger_metrics`, in report order."""

COMPLIANCE_KEYS: tuple[str, ...] = ("drawdown_breaches", "flatten_violations", "overnight_positions")
"""Keys of :func:`compliance_metrics`."""


@dataclass(frozen=True)
class Trade:
    """One closed trade (one contract).

    Attributes:
        side: ``"long"`` or ``"short"``.
        entry_bar: Bar index of the entry fill.
        exit_bar: Bar index of the exit fill.
        entry_price: Entry fill price (slippage included).
        exit_price: Exit fill price (slippage included).
        pnl_usd: Realised P&L net of commission and slippage.
        r_multiple: ``pnl_usd`` over the initial risk in USD.
        exit_reason: Why it closed (stop, target, flatten, ...).
        bars_held: Bars between entry and exit fills.
    """

    side: str
    entry_bar: int
    exit_bar: int
    entry_price: float
    exit_price: float
    pnl_usd: float
    r_multiple: float
    exit_reason: str
    bars_held: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form for reports."""
        return asdict(self)


def trades_from_events(events: Iterable[dict[str, Any]]) -> list[Trade]:
    """Pair the env's ``entry`` and ``exit`` events into closed trades.

    Args:
        events: Event dicts in time order, each with ``event`` and ``bar_index`` plus the env's trade fields
            (``side``, ``price``; exits also ``pnl_usd``, ``r_multiple``, ``exit_reason``, ``bars_held``).

    Returns:
        Closed trades; an entry still open when the events end is not a trade.

    Raises:
        ValueError: An exit without an open entry, or two entries in a row (the env trades one contract).
    """
    trades: list[Trade] = []
    entry: dict[str, Any] | None = None
    for event in events:
        kind = event.get("event")
        if kind == "entry":
            if entry is not None:
                raise ValueError(
                    f"entry at bar {event.get('bar_index')} while a trade from {entry['bar_index']} is open"
                )
            entry = event
        elif kind == "exit":
            if entry is None:
                raise ValueError(f"exit at bar {event.get('bar_index')} without an open entry")
            trades.append(Trade(
                side=str(entry["side"]), entry_bar=int(entry["bar_index"]), exit_bar=int(event["bar_index"]),
                entry_price=float(entry["price"]), exit_price=float(event["price"]),
                pnl_usd=float(event["pnl_usd"]), r_multiple=float(event["r_multiple"]),
                exit_reason=str(event["exit_reason"]), bars_held=int(event["bars_held"]),
            ))
            entry = None
    return trades


def ledger_metrics(
    trades: Sequence[Trade], *, total_bars: int, bars_in_position: int, days: int, starting_balance_usd: float,
    point_value: float,
) -> dict[str, float | int | None]:
    """Trade statistics of one agent over its evaluated episodes.

    Args:
        trades: Closed trades.
        total_bars: Decision bars stepped over all episodes.
        bars_in_position: Of those, bars that ended with a position open.
        days: Trading days (episode sessions) evaluated.
        starting_balance_usd: Account size for turnover.
        point_value: USD per index point for one contract (notional = price x point_value).

    Returns:
        ``trades``, ``win_rate`` (P&L > 0), ``profit_factor`` (gross profit / gross loss; ``None`` without a losing
        trade), ``expectancy_r`` and ``expectancy_usd`` (mean per trade), ``avg_bars_held``, ``exposure`` (fraction
        of bars in a position), ``turnover`` (traded notional, both sides, per day as a multiple of the starting
        balance), ``long_trades``, ``short_trades``. Means over no trades are ``None``.
    """
    pnl = np.array([t.pnl_usd for t in trades], dtype=np.float64)
    gross_loss = float(-pnl[pnl < 0].sum())
    notional = sum((abs(t.entry_price) + abs(t.exit_price)) * point_value for t in trades)
    return {
        "trades": len(trades),
        "win_rate": float((pnl > 0).mean()) if pnl.size else None,
        "profit_factor": float(pnl[pnl > 0].sum()) / gross_loss if gross_loss > 0 else None,
        "expectancy_r": float(np.mean([t.r_multiple for t in trades])) if trades else None,
        "expectancy_usd": float(pnl.mean()) if pnl.size else None,
        "avg_bars_held": float(np.mean([t.bars_held for t in trades])) if trades else None,
        "exposure": bars_in_position / total_bars if total_bars > 0 else None,
        "turnover": notional / starting_balance_usd / days if days > 0 else None,
        "long_trades": sum(t.side == "long" for t in trades),
        "short_trades": sum(t.side == "short" for t in trades),
    }


def compliance_metrics(
    episodes: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], *, past_flatten: np.ndarray,
    session_id: np.ndarray, starting_balance_usd: float, trailing_drawdown_usd: float,
) -> dict[str, int]:
    """Count breaches of the account rules over episodes.

    Args:
        episodes: Per episode ``(bar_index, in_position, equity_usd)`` arrays, one entry per decision bar, where
            ``in_position`` and ``equity_usd`` describe the account at the end of that bar.
        past_flatten: Per bar of the market, whether it opens after its session's flatten time (the flatten rule
            applied to the session's real close, :func:`tradelab.marketdata.clock.past_point`).
        session_id: The market's session column.
        starting_balance_usd: Equity at each episode start (the first trailing-drawdown peak).
        trailing_drawdown_usd: Equity at or below ``peak - this`` is a breach.

    Returns:
        ``drawdown_breaches`` (episodes whose equity touched the trailing limit), ``flatten_violations`` (bars with a
        position open after the session's flatten time) and ``overnight_positions`` (positions carried into a new session).
    """
    breaches = flatten = overnight = 0
    for bars, in_position, equity in episodes:
        bars = np.asarray(bars, dtype=np.int64)
        held = np.asarray(in_position, dtype=bool)
        curve = np.concatenate([[starting_balance_usd], np.asarray(equity, dtype=np.float64)])
        if np.any(curve <= np.maximum.accumulate(curve) - trailing_drawdown_usd):
            breaches += 1
        flatten += int(np.sum(held & past_flatten[bars]))
        if bars.size > 1:
            new_session = session_id[bars[1:]] != session_id[bars[:-1]]
            overnight += int(np.sum(held[:-1] & new_session))
    return {"drawdown_breaches": breaches, "flatten_violations": flatten, "overnight_positions": overnight}

