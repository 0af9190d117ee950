"""Ledger metrics and rule compliance on hand-built trades and paths."""

from __future__ import annotations

import numpy as np
import pytest

from tradelab.evaluation.ledger import (
    Trade,
    compliance_metrics,
    ledger_metrics,
    trades_from_events,
)


def _trade(side: str, pnl: float, r: float, bars: int, entry: float = 100.0, exit: float = 101.0) -> Trade:
    return Trade(side, 0, bars, entry, exit, pnl, r, "target" if pnl > 0 else "stop", bars)


TRADES = [
    _trade("long", 300.0, 1.5, 10, 18000.0, 18015.0),
    _trade("short", -200.0, -1.0, 4, 18010.0, 18020.0),
    _trade("long", 500.0, 2.0, 20, 18005.0, 18030.0),
    _trade("short", -100.0, -0.5, 6, 18040.0, 18045.0),
    _trade("long", 0.0, 0.0, 2, 18000.0, 18000.0),
]


def test_ledger_metrics_are_exact_on_hand_built_trades() -> None:
    got = ledger_metrics(TRADES, total_bars=200, bars_in_position=42, days=2, starting_balance_usd=50_000.0,
                         point_value=20.0)
    assert got["trades"] == 5
    assert got["win_rate"] == pytest.approx(2 / 5)  # a break-even trade is not a win
    assert got["profit_factor"] == pytest.approx(800.0 / 300.0)
    assert got["expectancy_r"] == pytest.approx((1.5 - 1.0 + 2.0 - 0.5 + 0.0) / 5)
    assert got["expectancy_usd"] == pytest.approx(500.0 / 5)
    assert got["avg_bars_held"] == pytest.approx((10 + 4 + 20 + 6 + 2) / 5)
    assert got["exposure"] == pytest.approx(42 / 200)
    notional = 20.0 * sum(t.entry_price + t.exit_price for t in TRADES)
    assert got["turnover"] == pytest.approx(notional / 50_000.0 / 2)
    assert (got["long_trades"], got["short_trades"]) == (3, 2)


def test_ledger_without_trades_or_losses() -> None:
    empty = ledger_metrics([], total_bars=100, bars_in_position=0, days=1, starting_balance_usd=50_000.0,
                           point_value=20.0)
    assert empty["trades"] == 0 and empty["exposure"] == 0.0 and empty["turnover"] == 0.0
    assert empty["win_rate"] is None and empty["expectancy_r"] is None and empty["profit_factor"] is None
    winners = ledger_metrics(TRADES[:1], total_bars=10, bars_in_position=10, days=1, starting_balance_usd=1.0,
                             point_value=1.0)
    assert winners["profit_factor"] is None and winners["win_rate"] == 1.0


def test_trades_pair_entry_and_exit_events() -> None:
    events = [
        {"event": "entry", "side": "long", "price": 100.25, "bar_index": 5},
        {"event": "exit", "side": "long", "price": 101.0, "bar_index": 9, "pnl_usd": 10.5, "r_multiple": 0.7,
         "exit_reason": "target", "bars_held": 4},
        {"event": "entry", "side": "short", "price": 102.0, "bar_index": 12},
    ]
    trades = trades_from_events(events)
    assert trades == [Trade("long", 5, 9, 100.25, 101.0, 10.5, 0.7, "target", 4)]
    with pytest.raises(ValueError, match="without an open entry"):
        trades_from_events(events[1:2])
    with pytest.raises(ValueError, match="is open"):
        trades_from_events([events[0], events[2]])


def test_compliance_counts_breaches_flatten_and_overnight() -> None:
    minute = np.array([950, 955, 956, 957, 570, 571], dtype=np.int16)
    session = np.array([0, 0, 0, 0, 1, 1], dtype=np.int32)
    clean = (np.array([0, 1]), np.array([True, False]), np.array([50_000.0, 49_000.0]))
    late = (np.array([1, 2, 3]), np.array([True, True, False]), np.array([50_000.0, 50_100.0, 50_000.0]))
    overnight = (np.array([3, 4, 5]), np.array([True, True, False]), np.array([50_000.0, 50_000.0, 50_000.0]))
    # peak 51,000 then 48,500 = peak - 2,500: a breach (at or below the limit)
    breach = (np.array([0, 1]), np.array([False, False]), np.array([51_000.0, 48_500.0]))
    got = compliance_metrics([clean, late, overnight, breach], past_flatten=minute > 955, session_id=session,
                             starting_balance_usd=50_000.0, trailing_drawdown_usd=2_500.0)
    # late: bar 2 (15:56) held -> 1; overnight: bar 3 (15:57) held -> 1; bars 1 (15:55) is not after 15:55
    assert got == {"drawdown_breaches": 1, "flatten_violations": 2, "overnight_positions": 1}

