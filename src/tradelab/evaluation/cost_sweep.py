"""Cost and slippage sensitivity: every agent's trades re-scored at multiples of commission and slippage.

Nothing is re-run. Each closed trade in the ledger paid ``2 x commission_per_side`` plus ``slippage_ticks`` on every
market fill: the entry, and the exit unless it was a target (a limit order; see :mod:`tradelab.core.tradesim`). Its
gross P&L is ``pnl_usd + cost``; at a multiple ``k`` of the costs it nets ``gross - k x cost``. The bars check the
ledger: each entry's fill must sit ``slippage_ticks`` from its bar's open on the adverse side, and trades are bucketed
into days by the session of their exit bar.

Re-scoring keeps the agents' actions fixed: at higher costs a real agent might trade less, and an account rule
(trailing drawdown) might have stopped it earlier. The sweep answers "what would these exact trades have netted".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab.core.tradesim import REASON_TARGET
from tradelab.evaluation.metrics import finite_or_none
from tradelab.evaluation.stats import annualised_sharpe

DEFAULT_MULTIPLES: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
"""Cost multiples of ``evaluate --cost-sweep`` (0x = frictionless, 1x = the contract's costs)."""

PRICE_TOLERANCE_POINTS = 1e-6
"""Rounding slack when comparing a ledger fill with the bar's open."""


@dataclass(frozen=True)
class TradeCosts:
    """Per-contract costs of one round trip as the env charged them.

    Attributes:
        commission_round_turn_usd: Commission for entry plus exit, USD.
        slippage_per_fill_usd: Slippage of one market fill, USD (``slippage_ticks x tick_value``).
        slippage_per_fill_points: The same in index points (``slippage_ticks x tick_size``).
    """

    commission_round_turn_usd: float
    slippage_per_fill_usd: float
    slippage_per_fill_points: float

    @classmethod
    def from_costs(cls, costs: Any) -> TradeCosts:
        """From a :class:`tradelab.core.tradesim.Costs` (or anything with its five fields)."""
        return cls(
            commission_round_turn_usd=2.0 * float(costs.commission_per_side),
            slippage_per_fill_usd=float(costs.slippage_ticks) * float(costs.tick_value),
            slippage_per_fill_points=float(costs.slippage_ticks) * float(costs.tick_size),
        )


def trade_cost_usd(trade: Mapping[str, Any], costs: TradeCosts) -> float:
    """Commission plus slippage one ledger trade paid at 1x costs, USD."""
    fills_with_slippage = 1 + (trade["exit_reason"] != REASON_TARGET)
    return costs.commission_round_turn_usd + fills_with_slippage * costs.slippage_per_fill_usd


def entry_matches_bar(trade: Mapping[str, Any], open_price: np.ndarray, costs: TradeCosts) -> bool:
    """Whether the ledger entry fill is the bar's open moved ``slippage`` against the trade."""
    side = 1.0 if trade["side"] == "long" else -1.0
    expected = float(open_price[int(trade["entry_bar"])]) + side * costs.slippage_per_fill_points
    return abs(float(trade["entry_price"]) - expected) <= PRICE_TOLERANCE_POINTS + 1e-9 * abs(expected)


def _profit_factor(pnl: np.ndarray) -> float | None:
    loss = float(-pnl[pnl < 0].sum())
    return float(pnl[pnl > 0].sum()) / loss if loss > 0 else None


def break_even_multiple(gross_usd: float, cost_usd: float) -> float | None:
    """Cost multiple at which total net P&L is zero: ``gross / cost``.

    Returns:
        ``0.0`` when the trades lose before costs, ``None`` when they cost nothing (no trades).
    """
    if cost_usd <= 0:
        return None
    return max(0.0, gross_usd / cost_usd)


def cost_sweep(
    trades: Sequence[Mapping[str, Any]], *, days_per_seed: Mapping[str, Mapping[int, int]], session_id: np.ndarray,
    open_price: np.ndarray, costs: TradeCosts, multiples: Sequence[float] = DEFAULT_MULTIPLES,
) -> dict[str, Any]:
    """Re-score every agent's ledger at each cost multiple.

    Args:
        trades: Ledger rows (``agent``, ``seed``, ``window``, ``episode``, ``side``, ``entry_bar``, ``exit_bar``,
            ``entry_price``, ``pnl_usd``, ``exit_reason``), as in ``trades.jsonl``.
        days_per_seed: Agent -> seed -> evaluated days (flat days included), so days without a trade count as 0.
        session_id: The market's session column (days are exit-bar sessions).
        open_price: The market's open column (entry fills are checked against it).
        costs: The per-trade costs at 1x.
        multiples: Cost multiples to score.

    Returns:
        ``{"multiples": [...], "agents": {name: {...}}}`` where each agent has ``trades``, ``days``,
        ``cost_usd`` (total at 1x over all seeds), ``gross_usd``, ``break_even_multiple``,
        ``entries_matching_bars`` and ``rows``: per multiple ``net_pnl_usd`` (mean over seeds), ``sharpe``
        (annualised, all seeds' days pooled), ``profit_factor``, ``win_rate`` and ``expectancy_usd``.
    """
    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for trade in trades:
        by_agent.setdefault(str(trade["agent"]), []).append(trade)
    out: dict[str, Any] = {}
    for agent, seeds in days_per_seed.items():
        ledger = by_agent.get(agent, [])
        pnl = np.array([float(t["pnl_usd"]) for t in ledger], dtype=np.float64)
        cost = np.array([trade_cost_usd(t, costs) for t in ledger], dtype=np.float64)
        day_keys = [(int(t["seed"]), int(t.get("window", 0)), int(t["episode"]), int(session_id[int(t["exit_bar"])]))
                    for t in ledger]
        n_days = int(sum(seeds.values()))
        rows = []
        for k in multiples:
            net = pnl + (1.0 - float(k)) * cost
            daily: dict[tuple[int, int, int, int], float] = {}
            for key, value in zip(day_keys, net):
                daily[key] = daily.get(key, 0.0) + float(value)
            days = np.concatenate([np.fromiter(daily.values(), dtype=np.float64),
                                   np.zeros(max(0, n_days - len(daily)))])
            rows.append({
                "multiple": float(k),
                "net_pnl_usd": float(net.sum()) / max(1, len(seeds)),
                "sharpe": finite_or_none(annualised_sharpe(days)),
                "profit_factor": _profit_factor(net),
                "win_rate": float((net > 0).mean()) if net.size else None,
                "expectancy_usd": float(net.mean()) if net.size else None,
            })
        gross = float((pnl + cost).sum())
        out[agent] = {
            "trades": int(pnl.size), "days": n_days, "seeds": len(seeds),
            "cost_usd": float(cost.sum()), "gross_usd": gross,
            "break_even_multiple": break_even_multiple(gross, float(cost.sum())),
            "entries_matching_bars": int(sum(entry_matches_bar(t, open_price, costs) for t in ledger)),
            "rows": rows,
        }
    return {"multiples": [float(k) for k in multiples], "agents": out}


def format_break_even(value: float | None) -> str:
    """Report text of a break-even multiple: ``2.35x``, ``loses before costs`` or ``n/a (no trades)``."""
    if value is None:
        return "n/a (no trades)"
    if value == 0.0:
        return "loses before costs"
    return f"{value:.2f}x" if math.isfinite(value) else "n/a"
