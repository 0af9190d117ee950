"""The env and ``replay.simulate_action`` agree on every trade outcome (same timing, exits and costs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tradelab.config import load_config
from tradelab.core import ACTION_IDS
from tradelab.core.replay import bars_to_flatten, simulate_action
from tradelab.core.tradesim import Costs, ExitRules
from tradelab.env import make_env
from tradelab.marketdata.arrays import MarketArrays

HORIZON_BARS = 400  # longer than a session: every trade ends by a stop, target, trail or the flatten


@pytest.fixture(scope="module")
def parity_env(walk_arrays: MarketArrays) -> Any:
    config = load_config(overrides={
        "env.rules.daily_loss_limit_usd": None, "env.rules.trailing_drawdown_usd": 1e9, "env.episode_bars": 2000,
    })
    return make_env("NQ", "unused", config=config, arrays=walk_arrays), config


def _forward(arrays: MarketArrays, t: int) -> tuple[dict, list[float]]:
    sl = slice(t + 1, t + 1 + HORIZON_BARS)
    forward = {k: getattr(arrays, k)[sl].tolist() for k in ("open", "high", "low", "close")}
    return forward, arrays.atr[sl].tolist()


def _run_to_exit(env: Any, first_action: int, manage_at: int | None, manage_action: int) -> tuple[dict, Any]:
    """Step until the trade exits; optionally take a management action ``manage_at`` bars after entry."""
    _, _, *_, info = env.step(first_action)
    snapshot = None
    for k in range(HORIZON_BARS):
        exits = [e for e in info["events"] if e["event"] == "exit"]
        if exits:
            return exits[0], snapshot
        action = ACTION_IDS["HOLD"]
        if k == manage_at and env.action_masks()[manage_action]:
            snapshot = (env.bar_index, env.position.to_dict(), env.market_context()["timestamp"])
            action = manage_action
        *_, info = env.step(action)
    raise AssertionError("trade did not exit")


@pytest.mark.parametrize("manage", ["none", "ENABLE_TRAIL", "MOVE_TO_BE"])
def test_env_matches_simulate_action(parity_env: Any, walk_arrays: MarketArrays, manage: str) -> None:
    env, config = parity_env
    spec = config.markets.contracts["NQ"]
    costs = Costs.from_spec(spec)
    rules = ExitRules.from_dict(config.env.rules.model_dump())
    rng = np.random.default_rng({"none": 0, "ENABLE_TRAIL": 1, "MOVE_TO_BE": 2}[manage])
    compared, reasons = 0, []
    for t in rng.integers(100, walk_arrays.split_index - HORIZON_BARS, 120):
        _, info = env.reset(options={"start_index": int(t)})
        if not env.action_masks()[ACTION_IDS["BUY"]]:
            continue
        action = int(rng.choice([ACTION_IDS["BUY"], ACTION_IDS["SELL"]]))
        manage_at = None if manage == "none" else int(rng.integers(0, 4))
        env_exit, snapshot = _run_to_exit(env, action, manage_at, ACTION_IDS.get(manage, 0))
        if snapshot is None:
            decision, position, timestamp = int(t), None, info["market_context"]["timestamp"]
            name = "BUY" if action == ACTION_IDS["BUY"] else "SELL"
        else:
            (decision, position, timestamp), name = snapshot, manage
        forward, atr_path = _forward(walk_arrays, decision)
        flatten = bars_to_flatten(timestamp, config.env.rules.flatten_time, spec.session_end)
        reasons.append(env_exit["exit_reason"])
        result = simulate_action(
            name, position, forward, float(walk_arrays.atr[decision]), costs, rules, flatten_after_bars=flatten,
            decision_close=float(walk_arrays.close[decision]), atr_path=atr_path,
        )
        assert flatten == _flatten_bars(walk_arrays, decision, config)
        assert result.exit_reason == env_exit["exit_reason"]
        assert result.pnl_usd == pytest.approx(env_exit["pnl_usd"], abs=1e-9)
        assert result.r_multiple == pytest.approx(env_exit["r_multiple"], abs=1e-12)
        assert result.bars_held == env_exit["bars_held"]
        compared += 1
    assert compared >= 40
    expected = {"none": {"stop", "target", "flatten_time"}, "ENABLE_TRAIL": {"trail"}, "MOVE_TO_BE": {"breakeven"}}
    assert expected[manage] <= set(reasons), reasons


def _flatten_bars(arrays: MarketArrays, t: int, config: Any) -> int:
    """Bars from decision ``t`` to the flatten, from the calendar (minute of day of the decision bar)."""
    hours, minutes = map(int, config.env.rules.flatten_time.split(":"))
    return max(hours * 60 + minutes - (int(arrays.minute_of_day[t]) + 1), 1)
