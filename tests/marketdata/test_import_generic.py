"""Generic OHLCV CSV and parquet import: time-column names, naive (ET) and aware times across DST, symbols."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tradelab.marketdata import import_market, list_markets, load_bars

ET = "America/New_York"


def _two_sessions_across_dst(sample) -> pd.DataFrame:
    """Ten bars from 09:30 on Friday 2024-03-08 (EST) and Monday 2024-03-11 (EDT), naive ET times."""
    first = sample.walk(10, start="2024-03-08 09:30", seed=1)
    second = sample.walk(10, start="2024-03-11 09:30", seed=2)
    return pd.concat([first, second], ignore_index=True)


def _expected_utc(frame: pd.DataFrame) -> list[pd.Timestamp]:
    return list(pd.DatetimeIndex(frame["timestamp"]).tz_localize(ET).tz_convert("UTC"))


def test_naive_csv_times_are_new_york_wall_time(tmp_path: Path, config, sample) -> None:
    frame = _two_sessions_across_dst(sample)
    src = tmp_path / "nq.csv"
    frame.rename(columns={"timestamp": "Datetime", "volume": "Vol"}).to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")
    assert report["source"]["kind"] == "csv" and report["source"]["time_column"] == "datetime"
    assert list(bars["timestamp"].dt.tz_convert("UTC")) == _expected_utc(frame)
    assert bars["timestamp"].iloc[0].utcoffset() != bars["timestamp"].iloc[-1].utcoffset()
    assert (bars["symbol"] == "NQ").all()


def test_aware_csv_times_are_converted(tmp_path: Path, config, sample) -> None:
    frame = _two_sessions_across_dst(sample)
    aware = pd.DatetimeIndex(frame["timestamp"]).tz_localize(ET).tz_convert("Europe/Berlin")
    src = tmp_path / "nq_berlin.csv"
    frame.assign(timestamp=aware.strftime("%Y-%m-%dT%H:%M:%S%z")).to_csv(src, index=False)
    import_market(tmp_path / "ws", src, "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")
    assert list(bars["timestamp"].dt.tz_convert("UTC")) == _expected_utc(frame)
    assert bars["timestamp"].dt.strftime("%H:%M").iloc[[0, 10]].tolist() == ["09:30", "09:30"]


def test_date_and_time_columns(tmp_path: Path, config, sample) -> None:
    frame = sample.walk(15, seed=4)
    split = frame.assign(Date=frame["timestamp"].dt.strftime("%Y-%m-%d"),
                         Time=frame["timestamp"].dt.strftime("%H:%M")).drop(columns="timestamp")
    src = tmp_path / "split.csv"
    split.to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    assert report["source"]["time_column"] == "date+time" and report["rows"] == 15


@pytest.mark.parametrize("aware", [False, True])
def test_parquet_import(tmp_path: Path, config, sample, aware: bool) -> None:
    frame = _two_sessions_across_dst(sample)
    if aware:
        frame["timestamp"] = frame["timestamp"].dt.tz_localize(ET).dt.tz_convert("UTC")
    src = tmp_path / "nq.parquet"
    frame.set_index("timestamp").to_parquet(src)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")
    assert report["source"]["kind"] == "parquet"
    assert list(bars["timestamp"].dt.tz_convert("UTC")) == _expected_utc(_two_sessions_across_dst(sample))
    assert bars["close"].tolist() == pytest.approx(frame["close"].tolist())
    listed = list_markets(tmp_path / "ws")
    assert [(m["market"], m["rows"], m["source"]) for m in listed] == [("NQ", 20, "parquet")]


def test_generic_with_contract_symbols_rolls(tmp_path: Path, config, sample) -> None:
    rows = sample.rows()
    frame = pd.DataFrame({
        "timestamp": rows["ts_event"].dt.tz_convert(ET).dt.tz_localize(None),
        **{c: rows[c] for c in ("open", "high", "low", "close", "volume", "symbol")},
    })
    src = tmp_path / "contracts.csv"
    frame.to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    assert [r["to"] for r in report["rolls"]] == ["NQM4"]
    assert report["dropped"]["spread_rows"] == len(sample.days)


def test_epoch_seconds_and_dst_ambiguous_wall_times(tmp_path: Path, config, sample) -> None:
    session = sample.walk(5, start="2024-11-04 09:30", seed=6)
    epoch = session.assign(timestamp=pd.DatetimeIndex(session["timestamp"]).tz_localize(ET).as_unit("s").asi8)
    src = tmp_path / "epoch.csv"
    epoch.to_csv(src, index=False)
    import_market(tmp_path / "ws", src, "NQ", config)
    assert list(load_bars(tmp_path / "ws", "NQ")["timestamp"].dt.tz_convert("UTC")) == _expected_utc(session)

    # 01:30 on 2024-11-03 happens twice in New York: a naive wall time there cannot be placed, so it is dropped.
    ambiguous = sample.walk(1, start="2024-11-03 01:30", seed=7)
    src = tmp_path / "ambiguous.csv"
    pd.concat([ambiguous, session], ignore_index=True).to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    assert report["dropped"]["dst_local_time_rows"] == 1 and report["rows"] == 5
