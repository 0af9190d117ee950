"""The env on imported bars: each session's real close drives the flatten rule and the prompt's minutes_to_close,
and bar-end stamps converted at import leave no bar t+1 in anything the agent or advisor sees at bar t."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradelab.advisor.prompts import build_messages
from tradelab.config import load_config
from tradelab.core import ACTION_IDS
from tradelab.env import make_env
from tradelab.marketdata import import_market, load_market_arrays

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bars"
ET = "America/New_York"
LOOSE = {"env.rules.stop_atr": 40.0, "env.rules.target_r": 40.0, "env.rules.trailing_drawdown_usd": 100_000.0,
         "env.rules.daily_loss_limit_usd": None, "env.random_start": False}
"""Stops and limits far away, so only the clock can close the trade."""


def _bar(arrays, stamp: str) -> int:
    return int(np.flatnonzero(arrays.timestamps_ns == pd.Timestamp(stamp, tz=ET).value)[0])


def _hold_long_from(env, arrays, start: str) -> tuple[dict, list[dict]]:
    """Enter long at the close of bar ``start`` and hold; return the first info and every event."""
    _, info = env.reset(options={"start_index": _bar(arrays, start)})
    assert "BUY" in info["market_context"]["allowed_actions"]
    events: list[dict] = []
    action = ACTION_IDS["BUY"]
    while True:
        _, _, terminated, truncated, step_info = env.step(action)
        events += step_info["events"]
        action = ACTION_IDS["HOLD"]
        if terminated or truncated or any(e["event"] == "exit" for e in events):
            return info, events


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("real_close")
    config = load_config(overrides=LOOSE)
    import_market(root, FIXTURES / "canonical.csv", "NQ", config)
    return root, config


def test_the_early_close_flattens_five_minutes_before_13_15(imported) -> None:
    root, config = imported
    arrays = load_market_arrays(root, "NQ", config)
    env = make_env("NQ", root, config=config, arrays=arrays)
    _, events = _hold_long_from(env, arrays, "2023-11-24 09:35")
    exit_ = next(e for e in events if e["event"] == "exit")
    closed_at = pd.Timestamp(int(arrays.timestamps_ns[exit_["bar_index"]]), tz="UTC").tz_convert(ET)
    assert exit_["exit_reason"] == "flatten_time" and closed_at.strftime("%Y-%m-%d %H:%M") == "2023-11-24 13:09"

    # A regular session still flattens at the bar closing at 15:55.
    _, events = _hold_long_from(env, arrays, "2023-11-22 09:35")
    exit_ = next(e for e in events if e["event"] == "exit")
    closed_at = pd.Timestamp(int(arrays.timestamps_ns[exit_["bar_index"]]), tz="UTC").tz_convert(ET)
    assert exit_["exit_reason"] == "flatten_time" and closed_at.strftime("%H:%M") == "15:54"


def test_minutes_to_close_and_entries_follow_the_real_close(imported) -> None:
    root, config = imported
    arrays = load_market_arrays(root, "NQ", config)
    env = make_env("NQ", root, config=config, arrays=arrays)
    _, info = env.reset(options={"start_index": _bar(arrays, "2023-11-24 13:00")})
    context = info["market_context"]
    assert context["minutes_to_close"] == 14  # the 13:00 bar closes at 13:01; the session at 13:15
    assert context["allowed_actions"] == ["HOLD"]  # after 12:45, the cut-off 30 minutes before the real close
    assert "14m left" in build_messages(context, config)[-1]["content"]  # the prompt counts to 13:15, not 16:00
    _, info = env.reset(options={"start_index": _bar(arrays, "2023-11-22 13:00")})
    assert info["market_context"]["minutes_to_close"] == 179 and "BUY" in info["market_context"]["allowed_actions"]


def test_after_the_end_stamp_conversion_bar_t_never_sees_bar_t_plus_1(tmp_path: Path) -> None:
    config = load_config(overrides={"env.random_start": False})
    src = FIXTURES / "NQ 12-23.Last.txt"
    lines = src.read_text().splitlines()
    # Bar t opens at 09:35 (NinjaTrader stamps it 093600); bar t+1 opens at 09:36 (stamped 093700).
    at = lines.index(next(line for line in lines if line.startswith("20231122 093700;")))
    changed = lines.copy()
    stamp, *_ = changed[at].split(";")
    changed[at] = f"{stamp};16500.00;16600.00;16400.00;16550.00;99999"
    edited = tmp_path / "edited.txt"
    edited.write_text("\n".join(changed) + "\n")
    import_market(tmp_path / "a", src, "NQ", config)
    import_market(tmp_path / "b", edited, "NQ", config)
    a, b = load_market_arrays(tmp_path / "a", "NQ", config), load_market_arrays(tmp_path / "b", "NQ", config)
    t = _bar(a, "2023-11-22 09:35")
    assert a.close[t + 1] != b.close[t + 1] and a.close[t] == b.close[t]
    np.testing.assert_array_equal(a.features[: t + 1], b.features[: t + 1])
    assert not np.array_equal(a.features[t + 1], b.features[t + 1])
    seen = []
    for arrays, root in ((a, tmp_path / "a"), (b, tmp_path / "b")):
        env = make_env("NQ", root, config=config, arrays=arrays)
        obs, info = env.reset(options={"start_index": t})
        seen.append((obs, info["market_context"], build_messages(info["market_context"], config)))
    np.testing.assert_array_equal(seen[0][0], seen[1][0])
    assert seen[0][1] == seen[1][1] and seen[0][2] == seen[1][2]
