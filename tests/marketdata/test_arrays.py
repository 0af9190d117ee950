"""``load_market_arrays``: shapes and dtypes, clock columns, split on a session boundary, missing-data errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradelab.errors import DataError, StageNotReady
from tradelab.marketdata import generate_market, list_markets, load_bars, load_market_arrays
from tradelab.marketdata.features import FEATURE_NAMES
from tradelab.marketdata.loader import holdout_split


@pytest.fixture(scope="module")
def market_root(tmp_path_factory: pytest.TempPathFactory, config) -> Path:
    root = tmp_path_factory.mktemp("arrays_ws")
    generate_market(root, "NQ", config, days=7, seed=4)
    return root


def test_shapes_dtypes_and_clock(market_root: Path, config) -> None:
    arrays = load_market_arrays(market_root, "NQ", config)
    bars = load_bars(market_root, "NQ")
    n = len(bars)
    assert len(arrays) == n and arrays.market == "NQ"
    for name in ("open", "high", "low", "close", "volume", "atr", "ema_fast", "ema_slow", "rsi", "vwap",
                 "atr_median"):
        column = getattr(arrays, name)
        assert column.shape == (n,) and column.dtype == np.float64 and np.isfinite(column).all(), name
    assert arrays.features.shape == (n, len(FEATURE_NAMES)) and arrays.features.dtype == np.float32
    assert arrays.features.flags.c_contiguous and np.isfinite(arrays.features).all()
    assert arrays.feature_names == FEATURE_NAMES
    assert arrays.timestamps_ns.dtype == np.int64 and arrays.minute_of_day.dtype == np.int16
    assert arrays.session_id.dtype == np.int32
    expected_ns = bars["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).astype("int64").to_numpy()
    np.testing.assert_array_equal(arrays.timestamps_ns, expected_ns)
    assert arrays.minute_of_day[0] == 570 and arrays.minute_of_day.max() == 959
    np.testing.assert_array_equal(np.unique(arrays.session_id), np.arange(7))
    np.testing.assert_array_equal(arrays.close, bars["close"].to_numpy())


def test_split_moves_forward_to_a_session_start(market_root: Path, config) -> None:
    arrays = load_market_arrays(market_root, "NQ", config)
    n, sid = len(arrays), arrays.session_id
    raw = int(n * (1 - config.env.holdout_fraction))
    assert raw <= arrays.split_index < n
    assert sid[arrays.split_index] != sid[arrays.split_index - 1]
    assert not np.any(np.diff(sid[raw:arrays.split_index]) != 0)  # the first boundary at or after raw
    assert arrays.minute_of_day[arrays.split_index] == 570


def test_holdout_split_edge_cases() -> None:
    sid = np.repeat(np.arange(4), 10)
    assert holdout_split(sid, 0.25) == 30        # already on a boundary
    assert holdout_split(sid, 0.3) == 30         # 28 -> next start 30
    assert holdout_split(sid, 0.05) == 30        # 38 -> no later start, falls back to the last one
    with pytest.raises(DataError, match="one session"):
        holdout_split(np.zeros(50, dtype=np.int32), 0.2)


def test_missing_market_names_both_commands(tmp_path: Path, config) -> None:
    with pytest.raises(StageNotReady) as info:
        load_market_arrays(tmp_path, "ES", config)
    message = str(info.value)
    assert "python main.py data generate --market ES" in message and "data import" in message
    assert list_markets(tmp_path) == []


def test_list_markets(market_root: Path) -> None:
    (entry,) = list_markets(market_root)
    assert entry["market"] == "NQ" and entry["rows"] == 7 * 390 and entry["source"] == "synthetic edge=0"
    assert pd.Timestamp(entry["start"]) < pd.Timestamp(entry["end"])
    assert Path(entry["path"]).is_file()
