"""Cost sweep on a hand-built ledger and bars: every figure worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradelab.core.tradesim import Costs
from tradelab.evaluation.cost_sweep import TradeCosts, break_even_multiple, cost_sweep, format_break_even

COSTS = TradeCosts.from_costs(Costs(tick_size=0.25, tick_value=5.0, point_value=20.0, commission_per_side=2.0,
                                    slippage_ticks=1.0))
"""Round turn commission 4 USD; one slipped fill 5 USD (0.25 points)."""

OPEN = np.array([99.0, 99.5, 100.0, 100.5, 101.0, 101.0, 101.5, 102.0, 102.5, 103.0])
SESSION = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])

LEDGER = [
    # target exit: one slipped fill -> cost 4 + 5 = 9, gross 59
    {"agent": "a", "seed": 1, "window": 0, "episode": 0, "side": "long", "entry_bar": 2, "exit_bar": 3,
     "entry_price": 100.25, "exit_price": 103.0, "pnl_usd": 50.0, "r_multiple": 1.0, "exit_reason": "target"},
    # stop exit: two slipped fills -> cost 14, gross -16
    {"agent": "a", "seed": 1, "window": 0, "episode": 1, "side": "short", "entry_bar": 5, "exit_bar": 6,
     "entry_price": 100.75, "exit_price": 102.0, "pnl_usd": -30.0, "r_multiple": -1.0, "exit_reason": "stop"},
    # flatten exit -> cost 14, gross 34; its entry is not the bar's open + slippage (103 != 102.25)
    {"agent": "a", "seed": 2, "window": 0, "episode": 0, "side": "long", "entry_bar": 7, "exit_bar": 8,
     "entry_price": 103.0, "exit_price": 104.0, "pnl_usd": 20.0, "r_multiple": 0.5, "exit_reason": "flatten_time"},
]


@pytest.fixture()
def sweep() -> dict:
    return cost_sweep(LEDGER, days_per_seed={"a": {1: 3, 2: 2}, "b": {1: 3, 2: 2}}, session_id=SESSION,
                      open_price=OPEN, costs=COSTS)


def test_net_pnl_per_multiple_and_break_even(sweep: dict) -> None:
    a = sweep["agents"]["a"]
    assert sweep["multiples"] == [0.0, 1.0, 2.0, 3.0]
    assert a["cost_usd"] == pytest.approx(37.0) and a["gross_usd"] == pytest.approx(77.0)
    # Net over both seeds: 77 - 37k; per seed half of it.
    assert [row["net_pnl_usd"] for row in a["rows"]] == pytest.approx([38.5, 20.0, 1.5, -17.0])
    assert a["break_even_multiple"] == pytest.approx(77.0 / 37.0)
    assert a["rows"][1]["win_rate"] == pytest.approx(2 / 3)
    assert a["rows"][0]["profit_factor"] == pytest.approx((59.0 + 34.0) / 16.0)
    assert a["rows"][0]["expectancy_usd"] == pytest.approx(77.0 / 3)


def test_sharpe_pads_days_without_trades_with_zero(sweep: dict) -> None:
    # 1x: seed 1 day 0 = 50, seed 1 day 1 = -30, seed 2 day 1 = 20; 5 evaluated days in all, so two flat days.
    days = np.array([50.0, -30.0, 20.0, 0.0, 0.0])
    expected = days.mean() / days.std(ddof=1) * math.sqrt(252)
    assert sweep["agents"]["a"]["rows"][1]["sharpe"] == pytest.approx(expected)


def test_entries_are_checked_against_the_bars(sweep: dict) -> None:
    assert sweep["agents"]["a"]["entries_matching_bars"] == 2


def test_agent_without_trades(sweep: dict) -> None:
    b = sweep["agents"]["b"]
    assert b["trades"] == 0 and b["break_even_multiple"] is None
    assert all(row["net_pnl_usd"] == 0.0 and row["sharpe"] is None for row in b["rows"])
    assert format_break_even(None) == "n/a (no trades)"


def test_break_even_of_a_losing_ledger_is_zero() -> None:
    assert break_even_multiple(-10.0, 5.0) == 0.0
    assert format_break_even(0.0) == "loses before costs"
    assert format_break_even(2.5) == "2.50x"
