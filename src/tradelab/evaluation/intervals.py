"""The report's interval section: each agent's figures with an interval that means something, and the n behind it.

* Daily P&L and Sharpe: stationary block bootstrap over the evaluated days (all seeds' days pooled, in seed then
  time order), :func:`tradelab.evaluation.stats.block_bootstrap_ci`.
* Win rate, advisor parse and hit rates: Wilson intervals over the pooled trades / advice.
* Profit factor and expectancy in R: block bootstrap over the trades in time order (a profit factor resampled from
  trades stays >= 0, which a t-interval over seeds does not).
* Net P&L per seed: Student-t over seeds, only with three seeds or more.
* PSR against zero and DSR against the best of ``n_trials`` configurations (daily returns on the starting balance).

Too few observations give ``None``; the markdown prints ``n/a (n=...)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tradelab.evaluation.stats import (
    TRADING_DAYS_PER_YEAR,
    block_bootstrap_ci,
    deflated_sharpe_ratio,
    probabilistic_sharpe_ratio,
    seed_t_ci,
    wilson_ci,
)

MIN_DAYS = 5
"""Fewest days for a bootstrap interval or a PSR/DSR."""

MIN_TRADES = 5
"""Fewest trades for a bootstrap interval over trades."""

MIN_SEEDS = 3
"""Fewest seeds for a t-interval over seeds."""


def _profit_factor(pnl: np.ndarray) -> float:
    loss = float(-pnl[pnl < 0].sum())
    return float(pnl[pnl > 0].sum()) / loss if loss > 0 else math.nan


def _interval(value: tuple[float, float] | None) -> list[float] | None:
    return [float(value[0]), float(value[1])] if value is not None else None


def _row(value: float | None, interval: tuple[float, float] | None, n: int, unit: str, method: str
         ) -> dict[str, Any]:
    return {"value": value, "ci": _interval(interval), "n": n, "unit": unit, "method": method}


def agent_intervals(
    daily_by_seed: Mapping[int, Sequence[float]], trades: Sequence[Mapping[str, Any]],
    per_seed_metrics: Sequence[Mapping[str, Any]], *, starting_balance_usd: float, level: float, n_trials: int,
    trial_sharpes: Sequence[float] | None, seed: int = 0,
) -> dict[str, Any]:
    """One agent's interval rows and PSR/DSR.

    Args:
        daily_by_seed: Seed -> net daily P&L (USD) of the evaluated days.
        trades: This agent's ledger rows over all seeds, in seed then time order.
        per_seed_metrics: The agent's metric dict of every seed (for net P&L per seed and advisor counts).
        starting_balance_usd: Balance daily returns are measured on (PSR/DSR).
        level: Confidence level.
        n_trials: Configurations evaluated on this market (DSR).
        trial_sharpes: Their annualised Sharpes, when known (DSR's spread).
        seed: Seed of the bootstrap.

    Returns:
        ``{"rows": {metric: {value, ci, n, unit, method}}, "psr": ..., "dsr": ..., "days": ..., "trades": ...,
        "seeds": ...}``.
    """
    days = np.array([v for s in sorted(daily_by_seed) for v in daily_by_seed[s]], dtype=np.float64)
    pnl = np.array([float(t["pnl_usd"]) for t in trades], dtype=np.float64)
    r_mult = np.array([float(t["r_multiple"]) for t in trades], dtype=np.float64)
    n_days, n_trades, n_seeds = int(days.size), int(pnl.size), len(daily_by_seed)
    boot = {"level": level, "seed": seed}
    sharpe = (float(days.mean() / days.std(ddof=1) * math.sqrt(TRADING_DAYS_PER_YEAR))
              if n_days >= 2 and days.std(ddof=1) > 0 else None)
    pf = _profit_factor(pnl) if n_trades else math.nan
    per_seed_pnl = [float(m["net_pnl_usd"]) for m in per_seed_metrics if m.get("net_pnl_usd") is not None]
    rows: dict[str, dict[str, Any]] = {
        "mean_daily_pnl_usd": _row(float(days.mean()) if n_days else None,
                                   block_bootstrap_ci(days, statistic="mean", min_n=MIN_DAYS, **boot),
                                   n_days, "days", "block bootstrap"),
        "sharpe_pooled": _row(sharpe, block_bootstrap_ci(days, statistic="sharpe", min_n=MIN_DAYS, **boot),
                              n_days, "days", "block bootstrap"),
        "net_pnl_usd_per_seed": _row(float(np.mean(per_seed_pnl)) if per_seed_pnl else None,
                                     seed_t_ci(per_seed_pnl, level=level, min_seeds=MIN_SEEDS),
                                     len(per_seed_pnl), "seeds", "t over seeds"),
        "win_rate": _row(float((pnl > 0).mean()) if n_trades else None,
                         wilson_ci(int((pnl > 0).sum()), n_trades, level=level), n_trades, "trades", "Wilson"),
        "profit_factor": _row(pf if math.isfinite(pf) else None,
                              block_bootstrap_ci(pnl, statistic=_profit_factor, min_n=MIN_TRADES, **boot),
                              n_trades, "trades", "block bootstrap"),
        "expectancy_r": _row(float(r_mult.mean()) if n_trades else None,
                             block_bootstrap_ci(r_mult, statistic="mean", min_n=MIN_TRADES, **boot),
                             n_trades, "trades", "block bootstrap"),
    }
    rows.update(_advisor_rows(per_seed_metrics, level))
    returns = days / starting_balance_usd
    return {
        "rows": rows, "days": n_days, "trades": n_trades, "seeds": n_seeds,
        "psr": probabilistic_sharpe_ratio(returns, min_n=MIN_DAYS),
        "dsr": deflated_sharpe_ratio(returns, n_trials=max(1, n_trials), trial_sharpes_annual=trial_sharpes,
                                     min_n=MIN_DAYS),
    }


def _advisor_rows(per_seed_metrics: Sequence[Mapping[str, Any]], level: float) -> dict[str, dict[str, Any]]:
    """Wilson rows for the advisor's parse rate and direction hit rate, from per-seed counts and rates."""
    if not any("parse_rate" in m for m in per_seed_metrics):
        return {}
    advice = sum(int(m.get("advice_count") or 0) for m in per_seed_metrics)
    parsed = sum(round(float(m["parse_rate"]) * int(m.get("advice_count") or 0))
                 for m in per_seed_metrics if m.get("parse_rate") is not None)
    # hit_rate is over the directional advice with a full forward window (``directional_advice``).
    scored = sum(int(m.get("directional_advice") or 0) for m in per_seed_metrics if m.get("hit_rate") is not None)
    hits = sum(round(float(m["hit_rate"]) * int(m.get("directional_advice") or 0))
               for m in per_seed_metrics if m.get("hit_rate") is not None)
    return {
        "parse_rate": _row(parsed / advice if advice else None, wilson_ci(parsed, advice, level=level), advice,
                           "advice", "Wilson"),
        "hit_rate": _row(hits / scored if scored else None, wilson_ci(hits, scored, level=level), scored,
                         "scored advice", "Wilson"),
    }


def trials_from_history(history: Sequence[Mapping[str, Any]], current: Mapping[str, Any],
                        agents: Sequence[str]) -> tuple[int, list[float]]:
    """Configurations evaluated on this market and their Sharpes, for the DSR.

    A configuration is a distinct ``(config_hash, adapter, agent)`` among the trained agents (baselines are not
    candidates a user selects among; aliases of one run are left out by the caller). The manifest's evaluation
    history plus this run count; a configuration evaluated again keeps its latest Sharpe.

    Args:
        history: The manifest's ``evaluation`` list (earlier runs).
        current: This run's ``{"config_hash", "adapter", "agents": {name: {"sharpe": ...}}}``.
        agents: Names of the trained agents.

    Returns:
        ``(n_trials, annualised Sharpes of the trials that have one)``; ``n_trials >= 1``.
    """
    trials: dict[tuple[str, str, str], float | None] = {}
    for entry in [*history, current]:
        for name, metrics in (entry.get("agents") or {}).items():
            if name in agents:
                sharpe = (metrics or {}).get("sharpe")
                key = (str(entry.get("config_hash")), str(entry.get("adapter")), name)
                trials[key] = float(sharpe) if isinstance(sharpe, (int, float)) and math.isfinite(sharpe) else None
    sharpes = [s for s in trials.values() if s is not None]
    return max(1, len(trials)), sharpes
