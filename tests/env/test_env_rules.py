"""Env rules on hand-built bars; every dollar figure is worked out by hand (NQ: $20/point, $2.25/side, 1 tick slip)."""

from __future__ import annotations

from typing import Any

import pytest

from tradelab.config import load_config
from tradelab.core import ACTION_IDS
from tradelab.env import make_env

PV, RT, SLIP = 20.0, 4.5, 0.25
HOLD, BUY, SELL = ACTION_IDS["HOLD"], ACTION_IDS["BUY"], ACTION_IDS["SELL"]
BE, TRAIL_ON, TRAIL_OFF = ACTION_IDS["MOVE_TO_BE"], ACTION_IDS["ENABLE_TRAIL"], ACTION_IDS["DISABLE_TRAIL"]
FLAT = (100.0, 100.0, 100.0, 100.0)


def _env(make_arrays: Any, bars: list[tuple[float, float, float, float]], overrides: dict | None = None, **kw: Any):
    config = load_config(overrides={"env.random_start": False, "env.window_bars": 2, **(overrides or {})})
    spec = config.markets.contracts["NQ"]
    assert (spec.point_value, 2 * spec.commission_per_side, spec.slippage_ticks * spec.tick_size) == (PV, RT, SLIP)
    o, h, l, c = zip(*bars)
    env = make_env("NQ", "unused", config=config, arrays=make_arrays(o, h, l, c, **kw))
    env.reset()
    return env


def _exit(info: dict) -> dict:
    exits = [e for e in info["events"] if e["event"] == "exit"]
    assert len(exits) == 1, info["events"]
    return exits[0]


def test_long_target_pnl_reward_and_balance(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT, (100, 101, 99.5, 100.5), (100.5, 106.5, 100, 106), (106, 106, 106, 106)])
    _, reward, *_, info = env.step(BUY)
    entry = info["events"][0]
    assert (entry["event"], entry["side"], entry["price"], entry["bar_index"]) == ("entry", "long", 100.25, 1)
    assert reward == 0.0 and info["market_context"]["position"]["stop"] == 97.25
    assert info["market_context"]["position"]["target"] == 106.25
    _, reward, terminated, truncated, info = env.step(HOLD)
    ex = _exit(info)
    pnl = (106.25 - 100.25) * PV - RT
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"], ex["bars_held"]) == ("target", 106.25, pnl, 2)
    assert reward == pytest.approx(pnl / (3.0 * PV)) and ex["r_multiple"] == pytest.approx(pnl / 60.0)
    assert info["market_context"]["account"]["balance"] == 50_000.0 + pnl
    assert info["market_context"]["position"]["side"] == "flat" and not terminated


def test_short_stop_with_slippage(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT, (100, 100.5, 99.5, 100), (100, 103, 99.5, 102), FLAT])
    env.step(SELL)  # fill 99.75, stop 102.75
    _, reward, *_, info = env.step(HOLD)
    ex = _exit(info)
    pnl = -(103.0 - 99.75) * PV - RT
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"]) == ("stop", 103.0, pnl)
    assert reward == pytest.approx(pnl / 60.0)


def test_gap_through_stop_fills_at_open(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT, (100, 100.5, 99.5, 100), (96, 96.5, 95, 96), FLAT])
    env.step(BUY)
    _, _, *_, info = env.step(HOLD)
    assert _exit(info)["price"] == 95.75 and _exit(info)["pnl_usd"] == (95.75 - 100.25) * PV - RT


def test_same_bar_stop_and_target_takes_the_stop(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT, (100, 100.5, 99.5, 100), (100, 107, 97, 106), FLAT])
    env.step(BUY)
    _, _, *_, info = env.step(HOLD)
    assert _exit(info)["exit_reason"] == "stop" and _exit(info)["price"] == 97.0


def test_break_even_mask_and_exit(make_arrays: Any) -> None:
    bars = [FLAT, (100, 100.75, 99.75, 100.5), (100.5, 101.5, 100.25, 101), (101, 101.2, 100.25, 100.5), FLAT]
    env = _env(make_arrays, bars)
    assert not env.action_masks()[BE]
    env.step(BUY)  # fill 100.25 -> BE level 100.5
    assert not env.action_masks()[BE]  # close 100.5 is not beyond the level
    env.step(HOLD)
    assert env.action_masks()[BE]  # close 101
    _, _, *_, info = env.step(BE)
    ex = _exit(info)
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"]) == ("breakeven", 100.25, -RT)


def test_trail_ratchets_never_loosens_and_exits(make_arrays: Any) -> None:
    bars = [FLAT, (100, 102.2, 99.9, 102), (102, 104.5, 101.5, 104), (104, 104.2, 103.25, 103.5),
            (103.5, 103.75, 102.9, 103), FLAT]
    env = _env(make_arrays, bars, {"env.rules.target_r": 10.0}, atr=1.0)
    env.step(BUY)  # fill 100.25, stop 98.75
    mask = env.action_masks()
    assert mask[TRAIL_ON] and not mask[TRAIL_OFF]
    _, _, *_, info = env.step(TRAIL_ON)  # stop -> 102 - 1 = 101, then bar 2 closes 104 -> 103
    assert info["market_context"]["position"]["stop"] == 103.0 and info["market_context"]["position"]["trail_on"]
    mask = env.action_masks()
    assert mask[TRAIL_OFF] and not mask[TRAIL_ON]
    _, _, *_, info = env.step(HOLD)
    assert info["market_context"]["position"]["stop"] == 103.0  # 103.5 - 1 = 102.5 would loosen
    _, reward, *_, info = env.step(HOLD)
    ex = _exit(info)
    pnl = (102.75 - 100.25) * PV - RT
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"]) == ("trail", 102.75, pnl)
    assert reward == pytest.approx(pnl / (1.5 * PV))


def test_trailing_drawdown_breach_terminates(make_arrays: Any) -> None:
    bars = [FLAT, (100, 100.5, 99.5, 100), (100, 110.5, 99.8, 110), (110, 110, 89, 90), FLAT]
    env = _env(make_arrays, bars, {"env.rules.trailing_drawdown_usd": 400.0}, atr=12.0)
    env.step(BUY)  # fill 100.25, stop 82.25, target 136.25; equity 49995 < peak 50000
    _, _, terminated, _, info = env.step(HOLD)
    account = info["market_context"]["account"]
    assert not terminated and account["peak"] == 50_000.0 + (110 - 100.25) * PV and account["drawdown_buffer"] == 400
    _, reward, terminated, truncated, info = env.step(HOLD)  # equity 49795 <= 50195 - 400
    ex = _exit(info)
    pnl = (89.75 - 100.25) * PV - RT
    assert terminated and not truncated
    assert (ex["exit_reason"], ex["pnl_usd"]) == ("drawdown", pnl)
    assert reward == pytest.approx(pnl / (18.0 * PV) - 5.0)
    assert not env.action_masks()[1:].any()


def test_entry_masked_when_stop_risk_exceeds_drawdown_buffer(make_arrays: Any) -> None:
    # 1.5 * 12 points * $20 + $4.5 commissions + 2 ticks slippage ($10) = $374.5
    env = _env(make_arrays, [FLAT] * 3, {"env.rules.trailing_drawdown_usd": 374.5}, atr=12.0)
    assert not env.action_masks()[BUY]
    env = _env(make_arrays, [FLAT] * 3, {"env.rules.trailing_drawdown_usd": 375.0}, atr=12.0)
    assert env.action_masks()[BUY]


def test_entry_cutoff_masks_and_invalid_action_is_hold(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT] * 5, start_minute=927)  # 15:27 ... 15:31; cutoff 15:30
    assert env.action_masks()[BUY]  # bar 15:27 closes 15:28
    env.step(HOLD)
    assert env.action_masks()[SELL]  # closes 15:29
    env.step(HOLD)
    assert not env.action_masks()[BUY] and not env.action_masks()[SELL]  # closes 15:30
    _, reward, *_, info = env.step(BUY)
    assert info["invalid_action"] and reward == pytest.approx(-0.1) and info["events"] == []
    assert info["market_context"]["position"]["side"] == "flat"


def test_flatten_at_flatten_time(make_arrays: Any) -> None:
    overrides = {"env.rules.entry_cutoff": "09:33", "env.rules.flatten_time": "09:34"}
    bars = [FLAT, (100, 100.5, 99.5, 100), (100, 101, 99.5, 100.75), (100.75, 101.5, 100.5, 101.25), FLAT]
    env = _env(make_arrays, bars, overrides)
    env.step(BUY)  # 09:30 decision, fill at the 09:31 open
    assert env.action_masks()[TRAIL_ON]
    _, _, *_, info = env.step(HOLD)
    assert info["events"] == []
    _, _, *_, info = env.step(HOLD)  # the 09:33 bar closes at 09:34: flattened at its close
    ex = _exit(info)
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"]) == ("flatten_time", 101.0, (101.0 - 100.25) * PV - RT)
    assert not env.action_masks()[BUY]


def test_entry_allowed_only_before_cutoff_close(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT] * 5, {"env.rules.entry_cutoff": "09:33", "env.rules.flatten_time": "09:34"})
    allowed = []
    for _ in range(4):
        allowed.append(bool(env.action_masks()[BUY]))
        env.step(HOLD)
    assert allowed == [True, True, False, False]  # bars 09:30, 09:31 close before 09:33


def test_flatten_at_session_change(make_arrays: Any) -> None:
    bars = [FLAT, (100, 100.5, 99.5, 100), (100, 101, 99.5, 100.5), (104, 104, 104, 104), FLAT, FLAT]
    env = _env(make_arrays, bars, minutes=[570, 571, 572, 570, 571, 572], sessions=[0, 0, 0, 1, 1, 1])
    env.step(BUY)
    assert not env.action_masks()[BUY]  # in a trade
    _, _, *_, info = env.step(HOLD)  # bar 2 is the session's last: closed at its close, never held overnight
    ex = _exit(info)
    pnl = (100.25 - 100.25) * PV - RT
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"]) == ("session_end", 100.25, pnl)
    assert not env.action_masks()[BUY]  # no order into the next session's open
    _, _, *_, info = env.step(HOLD)
    account = info["market_context"]["account"]
    assert account["daily_pnl"] == 0.0 and account["balance"] == 50_000.0 + pnl
    assert env.action_masks()[BUY]


def test_daily_loss_limit_flattens_and_blocks_until_next_session(make_arrays: Any) -> None:
    bars = [FLAT, (100, 100.5, 99.5, 100), (100, 100, 95, 95.25), FLAT, FLAT, FLAT, FLAT]
    env = _env(make_arrays, bars, {"env.rules.daily_loss_limit_usd": 100.0}, atr=4.0,
               sessions=[0, 0, 0, 0, 0, 1, 1], minutes=[570, 571, 572, 573, 574, 570, 571])
    env.step(BUY)  # fill 100.25, stop 94.25; close 95.25 -> open P&L -$100
    _, _, terminated, _, info = env.step(HOLD)
    ex = _exit(info)
    assert (ex["exit_reason"], ex["price"], ex["pnl_usd"]) == ("daily_loss", 95.0, (95.0 - 100.25) * PV - RT)
    assert not terminated and info["market_context"]["account"]["daily_pnl"] == -109.5
    masks = []
    for _ in range(3):
        masks.append(bool(env.action_masks()[BUY]))
        env.step(HOLD)
    assert masks == [False, False, False] and env.action_masks()[BUY]  # t=2,3 blocked; t=4 is session end


def test_daily_loss_limit_disabled(make_arrays: Any) -> None:
    bars = [FLAT, (100, 100.5, 99.5, 100), (100, 100, 95, 95.25), FLAT]
    env = _env(make_arrays, bars, {"env.rules.daily_loss_limit_usd": None}, atr=4.0)
    env.step(BUY)
    _, _, *_, info = env.step(HOLD)
    assert info["events"] == [] and info["market_context"]["position"]["unrealized_pnl"] == -100.0


def test_invalid_action_in_trade_is_hold(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT, FLAT, FLAT, FLAT])
    env.step(BUY)
    assert env.action_masks().tolist() == [True, False, False, False, True, False]
    _, reward, *_, info = env.step(SELL)
    assert info["invalid_action"] and reward == pytest.approx(-0.1)
    assert info["market_context"]["position"]["side"] == "long" and info["events"] == []


def test_episode_cap_closes_position(make_arrays: Any) -> None:
    bars = [FLAT] + [(100, 100.5, 99.5, 100)] * 10 + [(100, 101, 100, 101)] + [FLAT] * 8
    env = _env(make_arrays, bars, {"env.episode_bars": 11, "env.reward.hold_in_trade_cost": 0.01})
    _, reward, *_ = env.step(BUY)
    assert reward == pytest.approx(-0.01)
    for _ in range(9):
        _, _, terminated, truncated, _ = env.step(HOLD)
        assert not (terminated or truncated)
    _, reward, terminated, truncated, info = env.step(HOLD)
    ex = _exit(info)
    pnl = (100.75 - 100.25) * PV - RT
    assert truncated and not terminated and info["bar_index"] == 11
    assert (ex["exit_reason"], ex["pnl_usd"], ex["bars_held"]) == ("episode_end", pnl, 11)
    assert reward == pytest.approx(pnl / 60.0 - 0.01)
    with pytest.raises(RuntimeError):
        env.step(HOLD)


def test_pnl_usd_reward_kind(make_arrays: Any) -> None:
    env = _env(make_arrays, [FLAT, (100, 100.5, 99.5, 100), (100, 103, 99.5, 102), FLAT],
               {"env.reward.kind": "pnl_usd"})
    env.step(SELL)
    _, reward, *_ = env.step(HOLD)
    assert reward == pytest.approx((-(103.0 - 99.75) * PV - RT) / 100.0)
