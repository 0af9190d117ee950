"""Turn an agent's episode logs into its metrics: portfolio, ledger, rule compliance and advisor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab.evaluation.advisor_metrics import AdviceRecord, advisor_metrics, calibration_table
from tradelab.evaluation.episode import EpisodeLog
from tradelab.evaluation.ledger import Trade, compliance_metrics, ledger_metrics, trades_from_events
from tradelab.evaluation.metrics import portfolio_metrics


@dataclass(frozen=True)
class ScoringContext:
    """Market columns and account rules every agent is scored with.

    Attributes:
        close: Close column (forward returns for the advisor's hit rate).
        past_flatten: Per bar, whether it opens after its session's flatten time (flatten check).
        session_id: Session column (daily P&L, overnight check).
        starting_balance_usd: Episode starting balance.
        trailing_drawdown_usd: Apex trailing drawdown.
        point_value: USD per point for one contract.
        hit_horizon_bars: Forward bars for the direction hit rate.
        calibration_bins: Bins of the calibration table.
    """

    close: np.ndarray
    past_flatten: np.ndarray
    session_id: np.ndarray
    starting_balance_usd: float
    trailing_drawdown_usd: float
    point_value: float
    hit_horizon_bars: int
    calibration_bins: int


def episode_trades(log: EpisodeLog) -> list[Trade]:
    """Closed trades of one episode."""
    return trades_from_events(log.events)


def decision_bars(log: EpisodeLog) -> list[int]:
    """The bars the agent acted on (every recorded state but the terminal one)."""
    return log.bars[: max(1, len(log.bars) - 1)]


def daily_pnl_usd(logs: Sequence[EpisodeLog], session_id: np.ndarray) -> list[float]:
    """Net realised P&L of every (episode, session) the agent made decisions in, episodes in the given order.

    A trade counts on the session of its exit bar; an exit on the bar that ends the episode in a later session (the
    env plays one bar past the last decision) counts on the episode's last decision session. Days without a trade
    are 0, so every agent on the same starts has the same days.
    """
    days: list[float] = []
    for log in logs:
        sessions = list(dict.fromkeys(int(session_id[b]) for b in decision_bars(log)))
        pnl = dict.fromkeys(sessions, 0.0)
        for trade in episode_trades(log):
            day = int(session_id[trade.exit_bar])
            day = day if day in pnl else sessions[-1]
            pnl[day] += trade.pnl_usd
        days.extend(pnl.values())
    return days


def advice_records(logs: Sequence[EpisodeLog]) -> list[AdviceRecord]:
    """Every advice over the episodes, in order."""
    return [record for log in logs for record in log.advice]


def score_agent(
    logs: Sequence[EpisodeLog], ctx: ScoringContext, *, uses_advisor: bool, has_policy: bool
) -> dict[str, Any]:
    """All metrics of one agent over one seed's episodes (a flat dict of numbers and ``None``).

    Args:
        logs: The agent's episodes for one seed, in chronological order of their starts.
        ctx: Market columns and rules.
        uses_advisor: Add the advisor metrics.
        has_policy: A policy chose the actions (agreement with PPO is meaningful).
    """
    trades = [t for log in logs for t in episode_trades(log)]
    daily = daily_pnl_usd(logs, ctx.session_id)
    paths = [log.arrays() for log in logs]
    total_bars = sum(len(decision_bars(log)) for log in logs)
    held_bars = sum(sum(log.in_position[: len(decision_bars(log))]) for log in logs)
    metrics: dict[str, Any] = {"episodes": len(logs), "bars": total_bars}
    metrics.update(portfolio_metrics(daily, ctx.starting_balance_usd))
    metrics.update(ledger_metrics(
        trades, total_bars=total_bars, bars_in_position=held_bars, days=len(daily),
        starting_balance_usd=ctx.starting_balance_usd, point_value=ctx.point_value,
    ))
    metrics.update(compliance_metrics(
        paths, past_flatten=ctx.past_flatten, session_id=ctx.session_id,
        starting_balance_usd=ctx.starting_balance_usd, trailing_drawdown_usd=ctx.trailing_drawdown_usd,
    ))
    if uses_advisor:
        metrics.update(advisor_metrics(advice_records(logs), ctx.close, horizon_bars=ctx.hit_horizon_bars,
                                       has_policy=has_policy))
    return metrics


def agent_calibration(logs: Sequence[EpisodeLog], ctx: ScoringContext) -> list[dict[str, Any]]:
    """The calibration table of an advisor-using agent over the given episodes."""
    return calibration_table(advice_records(logs), ctx.close, horizon_bars=ctx.hit_horizon_bars,
                             bins=ctx.calibration_bins)
