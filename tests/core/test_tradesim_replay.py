"""Trading mechanics on hand-built bars: every expected dollar figure is computed by hand in the test."""

from __future__ import annotations

import pytest

from tradelab.core.replay import position_from_dict, simulate_action
from tradelab.core.tradesim import (
    Costs,
    ExitRules,
    Position,
    exit_fill,
    manage,
    net_pnl_usd,
    open_position,
    step_bar,
)

# NQ-like: 0.25 tick, $5 tick, $20 point, $2.25 per side, 1 tick slippage.
COSTS = Costs(tick_size=0.25, tick_value=5.0, point_value=20.0, commission_per_side=2.25, slippage_ticks=1)
RULES = ExitRules(stop_atr=1.5, target_r=2.0, trail_atr=1.0, be_buffer_ticks=1)
RT = 4.5  # round-turn commission


def _long() -> Position:
    # fill 100 + 0.25 = 100.25; stop 100.25 - 1.5*2 = 97.25; risk 3; target 100.25 + 6 = 106.25
    return open_position(1, 100.0, 2.0, COSTS, RULES)


def _short() -> Position:
    # fill 100 - 0.25 = 99.75; stop 102.75; target 93.75
    return open_position(-1, 100.0, 2.0, COSTS, RULES)


def test_open_long_and_short_levels() -> None:
    pos = _long()
    assert (pos.entry_price, pos.stop, pos.target, pos.initial_risk_points) == (100.25, 97.25, 106.25, 3.0)
    pos = _short()
    assert (pos.entry_price, pos.stop, pos.target, pos.initial_risk_points) == (99.75, 102.75, 93.75, 3.0)


def test_stop_rounds_to_tick() -> None:
    pos = open_position(1, 100.0, 1.1, COSTS, RULES)  # 1.65 points -> 98.6 -> nearest tick 98.5
    assert pos.stop == 98.5
    assert pos.initial_risk_points == pytest.approx(1.75)
    assert pos.target == 103.75  # 100.25 + 3.5


def test_decimal_tick_rounds_cleanly() -> None:
    costs = Costs(tick_size=0.1, tick_value=5.0, point_value=50.0, commission_per_side=1.0, slippage_ticks=0)
    pos = open_position(1, 2000.3, 0.7, costs, RULES)  # stop 2000.3 - 1.05 -> 1999.2 or 1999.3 (nearest)
    assert (repr(pos.stop), repr(pos.target)) in {("1999.2", "2002.5"), ("1999.3", "2002.3")}


def test_long_target_pnl() -> None:
    pos = _long()
    ex = step_bar(pos, 100.0, 106.5, 99.0, 106.0, 2.0, COSTS, RULES)
    assert ex is not None and ex.reason == "target" and ex.price == 106.25  # limit: no slippage
    assert net_pnl_usd(pos.side, pos.entry_price, ex.price, COSTS) == 6.0 * 20 - RT


def test_short_stop_pnl_with_slippage() -> None:
    pos = _short()
    ex = step_bar(pos, 100.0, 103.0, 99.5, 102.0, 2.0, COSTS, RULES)
    assert ex == (103.0, "stop")  # stop 102.75 + 1 tick
    assert net_pnl_usd(-1, 99.75, ex.price, COSTS) == -(103.0 - 99.75) * 20 - RT


def test_short_target() -> None:
    pos = _short()
    ex = step_bar(pos, 99.0, 99.5, 93.0, 94.0, 2.0, COSTS, RULES)
    assert ex == (93.75, "target")
    assert net_pnl_usd(-1, pos.entry_price, ex.price, COSTS) == 6.0 * 20 - RT


def test_gap_through_stop_fills_at_open() -> None:
    pos = _long()
    ex = step_bar(pos, 96.0, 96.5, 95.0, 96.0, 2.0, COSTS, RULES)
    assert ex == (95.75, "stop")
    assert net_pnl_usd(1, pos.entry_price, ex.price, COSTS) == (95.75 - 100.25) * 20 - RT


def test_gap_through_target_fills_at_open() -> None:
    pos = _short()
    assert step_bar(pos, 92.0, 92.5, 91.0, 92.0, 2.0, COSTS, RULES) == (92.0, "target")


def test_same_bar_stop_and_target_assumes_stop() -> None:
    pos = _long()
    ex = step_bar(pos, 100.0, 107.0, 97.0, 106.0, 2.0, COSTS, RULES)
    assert ex == (97.0, "stop")
    assert pos.bars_in_trade == 1


def test_no_exit_counts_bars() -> None:
    pos = _long()
    assert step_bar(pos, 100.0, 101.0, 99.0, 100.5, 2.0, COSTS, RULES) is None
    assert step_bar(pos, 100.5, 101.0, 99.0, 100.5, 2.0, COSTS, RULES) is None
    assert pos.bars_in_trade == 2 and pos.stop == 97.25


def test_move_to_be_only_beyond_level() -> None:
    pos = _long()
    assert not manage(pos, "MOVE_TO_BE", 100.5, 2.0, COSTS, RULES)  # level 100.5: not beyond
    assert pos.stop == 97.25 and not pos.be_moved
    assert manage(pos, "MOVE_TO_BE", 100.75, 2.0, COSTS, RULES)
    assert pos.stop == 100.5 and pos.be_moved
    assert not manage(pos, "MOVE_TO_BE", 105.0, 2.0, COSTS, RULES)  # only once
    ex = step_bar(pos, 100.75, 101.0, 100.0, 100.5, 2.0, COSTS, RULES)
    assert ex == (100.25, "breakeven")
    assert net_pnl_usd(1, pos.entry_price, ex.price, COSTS) == -RT


def test_move_to_be_short() -> None:
    pos = _short()
    assert manage(pos, "MOVE_TO_BE", 99.0, 2.0, COSTS, RULES)
    assert pos.stop == 99.5  # 99.75 - 1 tick


def test_trail_ratchets_at_close_and_never_loosens() -> None:
    pos = _long()
    assert manage(pos, "ENABLE_TRAIL", 102.0, 1.0, COSTS, RULES)
    assert pos.trail_on and pos.stop == 101.0  # 102 - 1 ATR, tighter than 97.25
    assert step_bar(pos, 102.0, 104.5, 101.5, 104.0, 1.0, COSTS, RULES) is None
    assert pos.stop == 103.0
    assert step_bar(pos, 104.0, 104.2, 103.25, 103.5, 1.0, COSTS, RULES) is None
    assert pos.stop == 103.0  # 102.5 would loosen
    ex = step_bar(pos, 103.5, 103.75, 102.9, 103.0, 1.0, COSTS, RULES)
    assert ex == (102.75, "trail")
    assert net_pnl_usd(1, pos.entry_price, ex.price, COSTS) == (102.75 - 100.25) * 20 - RT


def test_disable_trail_keeps_stop() -> None:
    pos = _long()
    manage(pos, "ENABLE_TRAIL", 102.0, 1.0, COSTS, RULES)
    assert manage(pos, "DISABLE_TRAIL", 102.0, 1.0, COSTS, RULES)
    assert not pos.trail_on and pos.stop == 101.0
    assert step_bar(pos, 102.0, 106.0, 101.5, 105.5, 1.0, COSTS, RULES) is None
    assert pos.stop == 101.0
    assert not manage(pos, "DISABLE_TRAIL", 102.0, 1.0, COSTS, RULES)


def test_exit_fill_market_and_limit() -> None:
    assert exit_fill(1, 100.0, COSTS) == 99.75
    assert exit_fill(-1, 100.0, COSTS) == 100.25
    assert exit_fill(1, 100.0, COSTS, limit=True) == 100.0


def test_costs_and_rules_from_superset_dict() -> None:
    contract = {**COSTS.to_dict(), "root_symbol": "NQ"}
    assert Costs.from_dict(contract) == COSTS
    rules = {**RULES.to_dict(), "flatten_time": "15:55", "entry_cutoff": "15:30"}
    assert ExitRules.from_dict(rules) == RULES
    with pytest.raises(KeyError):
        ExitRules.from_dict({"stop_atr": 1.0})


FORWARD = {
    "open": [100.0, 101.0, 102.0, 103.0],
    "high": [101.5, 102.5, 103.5, 104.0],
    "low": [99.5, 100.5, 101.5, 102.5],
    "close": [101.0, 102.0, 103.0, 103.5],
}


def test_simulate_flat_hold_is_no_trade() -> None:
    for action in ("HOLD", "MOVE_TO_BE", "ENABLE_TRAIL"):
        assert simulate_action(action, None, FORWARD, 2.0, COSTS, RULES) == (0.0, 0.0, "no_trade", 0)


def test_simulate_buy_to_horizon() -> None:
    res = simulate_action("BUY", None, FORWARD, 2.0, COSTS, RULES)
    # fill 100.25, never touches 97.25 or 106.25; exit at last close 103.5 - 0.25
    pnl = (103.25 - 100.25) * 20 - RT
    assert res.exit_reason == "horizon" and res.bars_held == 4
    assert res.pnl_usd == pytest.approx(pnl) and res.r_multiple == pytest.approx(pnl / 60.0)


def test_simulate_sell_stopped() -> None:
    res = simulate_action("SELL", {"side": "flat"}, FORWARD, 1.0, COSTS, RULES)
    # fill 99.75, stop 99.75 + 1.5 -> 101.25 (nearest tick of 101.25); bar 0 high 101.5 touches it
    assert res.exit_reason == "stop" and res.bars_held == 1
    assert res.pnl_usd == pytest.approx(-(101.5 - 99.75) * 20 - RT)


def test_simulate_flatten_after_bars() -> None:
    res = simulate_action("BUY", None, FORWARD, 2.0, COSTS, RULES, flatten_after_bars=2)
    assert res.exit_reason == "flatten_time" and res.bars_held == 2
    assert res.pnl_usd == pytest.approx((101.75 - 100.25) * 20 - RT)


def test_simulate_open_position_with_management_matches_manual() -> None:
    pos = open_position(1, 99.5, 1.0, COSTS, RULES)  # fill 99.75, stop 98.25, target 102.75, BE level 100.0
    record = {**pos.to_dict(), "unrealized_pnl": 0.0}
    del record["initial_risk_points"], record["be_moved"]  # experience records lack these
    held = simulate_action("HOLD", record, FORWARD, 1.0, COSTS, RULES)
    assert held == pytest.approx((3.0 * 20 - RT, (3.0 * 20 - RT) / 30.0, "target", 3))  # bar 2 high 103.5
    res = simulate_action("MOVE_TO_BE", record, FORWARD, 1.0, COSTS, RULES, decision_close=100.5)
    manual = position_from_dict(pos.to_dict(), RULES)
    assert manage(manual, "MOVE_TO_BE", 100.5, 1.0, COSTS, RULES)
    ex = step_bar(manual, FORWARD["open"][0], FORWARD["high"][0], FORWARD["low"][0], FORWARD["close"][0], 1.0,
                  COSTS, RULES)
    assert ex == (99.75, "breakeven")  # bar 0 low 99.5 <= 100.0, filled a tick worse
    assert res == pytest.approx((-RT, -RT / 30.0, "breakeven", 1))


def test_simulate_does_not_mutate_position() -> None:
    pos = _long()
    simulate_action("ENABLE_TRAIL", pos, FORWARD, 2.0, COSTS, RULES, decision_close=103.0)
    assert not pos.trail_on and pos.bars_in_trade == 0


def test_simulate_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        simulate_action("BUY", None, {"open": [], "high": [], "low": [], "close": []}, 2.0, COSTS, RULES)
    with pytest.raises(ValueError):
        simulate_action("BUY", None, FORWARD, 2.0, COSTS, RULES, flatten_after_bars=0)
    with pytest.raises(ValueError):
        simulate_action("MOVE_TO_BE", _long(), FORWARD, 2.0, COSTS, RULES)
    with pytest.raises(ValueError):
        open_position(1, 100.0, float("nan"), COSTS, RULES)


def test_simulate_reads_atr_path_from_forward() -> None:
    pos = open_position(1, 99.0, 1.0, COSTS, RULES)  # fill 99.25, stop 97.75, target 102.25
    bars = {"open": [100.0, 101.0], "high": [101.5, 101.2], "low": [99.5, 99.8], "close": [101.0, 100.5]}
    kw = {"decision_close": 100.0}  # trail on at close 100, ATR 1 -> stop 99.0
    # ATR 1 at bar 0's close ratchets to 100.0, hit by bar 1's low 99.8: exit 99.75
    narrow = simulate_action("ENABLE_TRAIL", pos, bars, 1.0, COSTS, RULES, **kw)
    assert narrow == pytest.approx((0.5 * 20 - RT, (0.5 * 20 - RT) / 30.0, "trail", 2))
    # ATR 3 on the forward bars never tightens past 99.0: held to the horizon, out at 100.5 - 1 tick
    wide = {**bars, "atr_path": [3.0, 3.0]}
    res = simulate_action("ENABLE_TRAIL", pos, wide, 1.0, COSTS, RULES, **kw)
    assert res == pytest.approx((1.0 * 20 - RT, (1.0 * 20 - RT) / 30.0, "horizon", 2))
    assert res == simulate_action("ENABLE_TRAIL", pos, bars, 1.0, COSTS, RULES, atr_path=[3.0, 3.0], **kw)
