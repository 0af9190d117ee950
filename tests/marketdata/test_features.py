"""Features are point-in-time (truncation and future-perturbation tests), match ``ta``, and are cached by bars hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from ta.volatility import AverageTrueRange

from tradelab.marketdata import generate_market, load_market_arrays
from tradelab.marketdata import loader
from tradelab.marketdata.features import FEATURE_NAMES, compute_features, session_vwap, wilder_atr
from tradelab.marketdata.sessions import session_ids_from_close, utc_ns
from tradelab.marketdata.synth import synthesize_bars
from tradelab.markets import contract_spec
from tradelab.paths import Workspace

DAYS = 4


@pytest.fixture(scope="module")
def bars(config) -> pd.DataFrame:
    return synthesize_bars(contract_spec(config, "NQ"), "NQ", days=DAYS, seed=21)[0]


def _features(frame: pd.DataFrame, config) -> pd.DataFrame:
    close_ns = utc_ns(frame["session_close"])
    return compute_features(frame, session_ids_from_close(close_ns), utc_ns(frame["timestamp"]),
                            utc_ns(frame["session_open"]), close_ns,
                            atr_period_bars=config.env.rules.atr_period_bars)


@pytest.mark.parametrize("cut", [7, 389, 390, 777, 1201])
def test_truncated_series_gives_the_same_prefix(bars: pd.DataFrame, config, cut: int) -> None:
    full = _features(bars, config)
    prefix = _features(bars.iloc[:cut].reset_index(drop=True), config)
    assert list(prefix.columns) == list(full.columns)
    np.testing.assert_allclose(prefix.to_numpy(), full.iloc[:cut].to_numpy(), rtol=1e-9, atol=1e-9)


def test_future_bars_do_not_move_past_values(bars: pd.DataFrame, config) -> None:
    cut = 1000
    changed = bars.copy()
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.5, 2.0, len(bars) - cut)
    for column in ("open", "high", "low", "close"):
        changed.loc[cut:, column] = bars.loc[cut:, column].to_numpy() * scale
    changed.loc[cut:, "volume"] = rng.integers(1, 10**6, len(bars) - cut)
    before, after = _features(bars, config), _features(changed, config)
    np.testing.assert_array_equal(before.iloc[:cut].to_numpy(), after.iloc[:cut].to_numpy())
    assert not np.allclose(before.iloc[cut:].to_numpy(), after.iloc[cut:].to_numpy())


def test_indicators_match_ta_and_have_no_gaps(bars: pd.DataFrame, config) -> None:
    period = config.env.rules.atr_period_bars
    h, lo, c = (bars[k].to_numpy() for k in ("high", "low", "close"))
    ours = wilder_atr(h, lo, c, period)
    theirs = AverageTrueRange(bars["high"], bars["low"], bars["close"], window=period).average_true_range()
    np.testing.assert_allclose(ours[period - 1:], theirs.to_numpy()[period - 1:], rtol=1e-10)
    feats = _features(bars, config)
    assert not feats.isna().any().any()
    assert [c for c in feats.columns if c.startswith("f_")] == [f"f_{n}" for n in FEATURE_NAMES]
    assert ((feats["rsi"] >= 0) & (feats["rsi"] <= 100)).all()


def test_vwap_restarts_each_session() -> None:
    high = np.array([11.0, 12.0, 13.0, 21.0, 22.0])
    low = high - 1.0
    close = high - 0.5
    volume = np.array([1.0, 3.0, 0.0, 2.0, 2.0])
    vwap = session_vwap(high, low, close, volume, np.array([0, 0, 0, 1, 1]))
    typical = (high + low + close) / 3
    expected = [typical[0], (typical[0] + 3 * typical[1]) / 4, (typical[0] + 3 * typical[1]) / 4, typical[3],
                (typical[3] + typical[4]) / 2]
    np.testing.assert_allclose(vwap, expected)


def test_feature_cache_is_reused_and_invalidated(tmp_path: Path, config, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_market(tmp_path, "NQ", config, days=3, seed=1)
    first = load_market_arrays(tmp_path, "NQ", config)
    path = Workspace.at(tmp_path).features_path("NQ")
    key = json.loads(pq.read_schema(path).metadata[b"tradelab"])
    assert key["bars_sha256"] == json.loads(Workspace.at(tmp_path).data_report_path("NQ").read_text())["bars_sha256"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("features recomputed although the bars did not change")

    with monkeypatch.context() as patch:
        patch.setattr(loader, "compute_features", refuse)
        cached = load_market_arrays(tmp_path, "NQ", config)
    np.testing.assert_array_equal(cached.features, first.features)
    np.testing.assert_array_equal(cached.atr, first.atr)

    generate_market(tmp_path, "NQ", config, days=3, seed=2)
    fresh = load_market_arrays(tmp_path, "NQ", config)
    assert not np.allclose(fresh.atr, first.atr)
    assert json.loads(pq.read_schema(path).metadata[b"tradelab"])["bars_sha256"] != key["bars_sha256"]
