"""Portfolio metrics on daily P&L, computed with empyrical-reloaded.

Daily P&L in USD (net of costs) becomes daily returns on the fixed starting balance, ``pnl_usd / starting_balance``,
so one contract's result is not compounded. Ratios come from empyrical; the dollar figures are summed directly.
Undefined values (a flat agent's Sharpe, a series of one day) are ``None``, never a stand-in number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tradelab.marketdata.budget import MIN_RATIO_DAYS

PORTFOLIO_KEYS: tuple[str, ...] = (
    "net_pnl_usd", "days", "mean_daily_pnl_usd", "max_drawdown_usd", "sharpe", "sortino", "max_drawdown", "calmar",
    "annual_return",
)
"""Keys of :func:`portfolio_metrics`, in report order."""


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when it is a finite number, else ``None`` (NaN and inf are not valid JSON)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def daily_returns(daily_pnl_usd: Sequence[float], starting_balance_usd: float) -> np.ndarray:
    """Daily P&L in USD as simple returns on the starting balance.

    Args:
        daily_pnl_usd: Net P&L of each trading day, in order.
        starting_balance_usd: The account size the returns are measured against (> 0).

    Returns:
        float64 array of ``pnl / starting_balance``.
    """
    if starting_balance_usd <= 0:
        raise ValueError(f"starting_balance_usd must be > 0, got {starting_balance_usd}")
    return np.asarray(daily_pnl_usd, dtype=np.float64) / float(starting_balance_usd)


def max_drawdown_usd(daily_pnl_usd: Sequence[float]) -> float:
    """Largest peak-to-trough fall of cumulative P&L in USD (<= 0), the curve starting at 0."""
    pnl = np.asarray(daily_pnl_usd, dtype=np.float64)
    if pnl.size == 0:
        return 0.0
    curve = np.concatenate([[0.0], np.cumsum(pnl)])
    return float(np.min(curve - np.maximum.accumulate(curve)))


def portfolio_metrics(daily_pnl_usd: Sequence[float], starting_balance_usd: float) -> dict[str, float | None]:
    """Net P&L, Sharpe, Sortino, max drawdown, Calmar and annual return of a daily P&L series.

    Args:
        daily_pnl_usd: Net P&L (after commission and slippage) of each evaluated trading day, in order.
        starting_balance_usd: Account size the daily returns are measured against.

    Returns:
        A dict with the keys of :data:`PORTFOLIO_KEYS`. ``max_drawdown`` is empyrical's (a negative fraction of the
        compounded curve); ``max_drawdown_usd`` is the same on cumulative dollars. Ratios that are undefined for the
        series (zero variance, fewer than two days, no drawdown) are ``None``.
    """
    import empyrical

    pnl = np.asarray(daily_pnl_usd, dtype=np.float64)
    returns = daily_returns(pnl, starting_balance_usd)
    enough = returns.size >= 2
    return {
        "net_pnl_usd": float(pnl.sum()),
        "days": int(pnl.size),
        "mean_daily_pnl_usd": float(pnl.mean()) if pnl.size else None,
        "max_drawdown_usd": max_drawdown_usd(pnl),
        "sharpe": finite_or_none(empyrical.sharpe_ratio(returns, period="daily")) if enough else None,
        "sortino": finite_or_none(empyrical.sortino_ratio(returns, period="daily")) if enough else None,
        "max_drawdown": finite_or_none(empyrical.max_drawdown(returns)) if returns.size else None,
        "calmar": finite_or_none(empyrical.calmar_ratio(returns, period="daily")) if enough else None,
        "annual_return": finite_or_none(empyrical.annual_return(returns, period="daily")) if returns.size else None,
    }



RATIO_KEYS: tuple[str, ...] = ("sharpe", "sortino", "calmar")
"""The annualised ratios the headline tables pool over days."""


def pooled_ratios(daily_by_seed: dict[int, Sequence[float]], starting_balance_usd: float,
                  min_days: int = MIN_RATIO_DAYS) -> dict[str, float | int | None]:
    """Sharpe, Sortino and Calmar over every seed's days pooled into one series (seed order, then time).

    These are the figures the report's interval section uses (its pooled Sharpe is the same number).

    Args:
        daily_by_seed: Seed -> net daily P&L (USD) of the evaluated days.
        starting_balance_usd: Account size the daily returns are measured against.
        min_days: Fewest pooled days for a number; fewer give ``None``.

    Returns:
        ``{"sharpe", "sortino", "calmar", "days"}``.
    """
    days = [float(v) for seed in sorted(daily_by_seed) for v in daily_by_seed[seed]]
    if len(days) < min_days:
        return {**dict.fromkeys(RATIO_KEYS), "days": len(days)}
    metrics = portfolio_metrics(days, starting_balance_usd)
    return {**{k: metrics[k] for k in RATIO_KEYS}, "days": len(days)}
