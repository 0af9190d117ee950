"""Validation and repair: price-scale blocks, high < low, brackets, NaN, non-positive prices, out-of-order rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradelab.marketdata import import_market, load_bars
from tradelab.marketdata.validate import scale_offsets


def _import(tmp_path: Path, config, frame: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    src = tmp_path / "bars.csv"
    frame.to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    return report, load_bars(tmp_path / "ws", "NQ")


def _repair(report: dict, kind: str) -> dict:
    found = [r for r in report["repairs"] if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind!r} repair in {report['repairs']}"
    return found[0]


@pytest.mark.parametrize("level", [4321.0, 3.7, 91_250.0])
@pytest.mark.parametrize("factor", [100.0, 0.01])
def test_price_scale_block_is_detected_and_rescaled(tmp_path: Path, config, sample, level: float,
                                                    factor: float) -> None:
    clean = sample.walk(300, level=level, seed=3)
    corrupt = clean.copy()
    block = slice(120, 135)
    for column in ("open", "high", "low", "close"):
        corrupt.loc[corrupt.index[block], column] *= factor
    report, bars = _import(tmp_path, config, corrupt)
    entry = _repair(report, "price_scale")
    assert entry["count"] == 15
    assert [(r["bars"], r["found_factor"]) for r in entry["runs"]] == [(15, factor)]
    for column in ("open", "high", "low", "close"):
        np.testing.assert_allclose(bars[column].to_numpy(), clean[column].to_numpy(), rtol=1e-12)


def test_scale_offsets_single_field_and_leading_block() -> None:
    prices = np.linspace(100.0, 101.0, 40)
    prices[:5] *= 100.0    # the series starts corrupted
    prices[20] /= 100.0    # and one isolated bar is off the other way
    offsets = scale_offsets(prices)
    expected = np.zeros(40, dtype=np.int64)
    expected[:5], expected[20] = 2, -2
    np.testing.assert_array_equal(offsets, expected)
    assert not scale_offsets(np.linspace(100.0, 180.0, 40)).any()  # a steep but real move is left alone


def test_ohlc_nan_nonpositive_and_order_repairs(tmp_path: Path, config, sample) -> None:
    frame = sample.walk(60, seed=5)
    high_10, low_10 = float(frame.loc[10, "high"]), float(frame.loc[10, "low"])
    frame.loc[10, "high"], frame.loc[10, "low"] = low_10, high_10                 # high < low
    frame.loc[20, "high"] = min(frame.loc[20, "open"], frame.loc[20, "close"])    # high below the body
    frame.loc[30, "close"] = np.nan
    frame.loc[40, "low"] = -1.0
    frame.loc[50, "volume"] = -5.0
    frame = frame.iloc[[*range(0, 44), 45, 44, *range(46, 60)]]                   # two rows swapped
    report, bars = _import(tmp_path, config, frame)

    assert _repair(report, "high_below_low")["source_rows"] == [10]
    assert _repair(report, "bracket")["source_rows"] == [20]
    assert _repair(report, "nan")["source_rows"] == [30]
    assert _repair(report, "non_positive_price")["source_rows"] == [40]
    assert _repair(report, "negative_volume")["source_rows"] == [50]
    assert _repair(report, "out_of_order")["count"] == 1
    assert len(bars) == 60 - 3
    assert bars["timestamp"].is_monotonic_increasing
    assert (bars["high"] >= bars[["open", "close", "low"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    swapped = bars[bars["timestamp"] == pd.Timestamp(frame.loc[10, "timestamp"], tz="America/New_York")].iloc[0]
    assert (swapped["high"], swapped["low"]) == pytest.approx((high_10, low_10))
