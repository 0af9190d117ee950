"""The synthetic default market: determinism, calendar, tick grid, OHLC consistency, regimes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tradelab.fileio import sha256_file
from tradelab.marketdata import generate_market, list_markets, load_bars
from tradelab.marketdata.synth import REGIMES, synthesize_bars
from tradelab.markets import contract_spec
from tradelab.paths import Workspace


def test_same_seed_same_bars_different_seed_different(tmp_path: Path, config) -> None:
    reports = [generate_market(tmp_path / name, "NQ", config, days=5, seed=seed)
               for name, seed in (("a", 11), ("b", 11), ("c", 12))]
    bars = [load_bars(tmp_path / name, "NQ") for name in ("a", "b", "c")]
    pd.testing.assert_frame_equal(bars[0], bars[1])
    assert reports[0]["bars_sha256"] == reports[1]["bars_sha256"] != reports[2]["bars_sha256"]
    assert not np.allclose(bars[0]["close"], bars[2]["close"])
    stored = Workspace.at(tmp_path / "a").bars_path("NQ")
    assert sha256_file(stored) == reports[0]["bars_sha256"]
    report = json.loads(Workspace.at(tmp_path / "a").data_report_path("NQ").read_text())
    assert report["source"] == reports[0]["source"] and report["source"]["kind"] == "synthetic"
    assert report["source"]["seed"] == 11 and report["origin"]["seed"] == 11
    assert list_markets(tmp_path / "a")[0]["source"] == "synthetic edge=0"


def test_calendar_session_and_dst(config) -> None:
    spec = contract_spec(config, "NQ")
    bars, _ = synthesize_bars(spec, "NQ", days=60, seed=3)
    ts = bars["timestamp"]
    assert len(bars) == 60 * 390
    assert ts.is_monotonic_increasing and ts.is_unique
    assert (ts.dt.dayofweek < 5).all()
    clock = ts.dt.strftime("%H:%M")
    assert clock.iloc[0] == spec.session_start and clock.iloc[389] == "15:59"
    per_day = bars.groupby(ts.dt.date)
    assert (per_day.size() == 390).all()
    assert (per_day["timestamp"].first().dt.strftime("%H:%M") == "09:30").all()
    offsets = {t.utcoffset().total_seconds() / 3600 for t in per_day["timestamp"].first()}
    assert offsets == {-5.0, -4.0}  # crosses the March change, still opening at 09:30 ET


def test_prices_on_tick_grid_and_ohlc_consistent(config) -> None:
    for market in ("NQ", "RTY", "YM"):
        spec = contract_spec(config, market)
        bars, regimes = synthesize_bars(spec, market, days=10, seed=5)
        for column in ("open", "high", "low", "close"):
            ticks = bars[column].to_numpy() / spec.tick_size
            np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-6)
        assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
        assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
        assert (bars["low"] > 0).all() and (bars["volume"] >= 1).all()
        assert sum(regimes.values()) == len(bars) and set(regimes) == {r[0] for r in REGIMES}
        assert abs(bars["close"].iloc[0] / spec.synthetic_start_price - 1) < 0.01


def test_volatility_smile_and_volume_profile(config) -> None:
    spec = contract_spec(config, "NQ")
    bars, _ = synthesize_bars(spec, "NQ", days=40, seed=9)
    minute = np.tile(np.arange(390), 40)
    abs_ret = np.abs(np.log(bars["close"] / bars["open"])).to_numpy()
    edges, middle = (minute < 15) | (minute >= 375), (minute >= 150) & (minute < 240)
    assert abs_ret[edges].mean() > 1.3 * abs_ret[middle].mean()
    volume = bars["volume"].to_numpy()
    assert volume[edges].mean() > 1.3 * volume[middle].mean()
