"""Databento OHLCV-1m import: CSV and zip, ISO and integer-ns times, DST, spreads, roll, duplicates, session."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tradelab.fileio import sha256_file
from tradelab.marketdata import import_market, load_bars
from tradelab.paths import Workspace


def _front(bars: pd.DataFrame) -> dict[str, str]:
    by_day = bars.groupby(bars["timestamp"].dt.strftime("%Y-%m-%d"))["symbol"]
    assert (by_day.nunique() == 1).all(), "one contract per session"
    return by_day.first().to_dict()


@pytest.mark.parametrize("integer_ns", [False, True])
def test_csv_import_dst_roll_spreads_duplicates(
    tmp_path: Path, config, sample, databento_csv, integer_ns: bool
) -> None:
    src = databento_csv(integer_ns=integer_ns)
    before = (sha256_file(src), src.stat().st_mtime_ns)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")

    assert (sha256_file(src), src.stat().st_mtime_ns) == before
    assert report["source"]["kind"] == "databento" and report["source"]["sha256"] == before[0]
    # Session bars only, ET wall clock on both sides of the 2024-03-10 DST change.
    assert len(bars) == len(sample.days) * sample.session_bars == report["rows"]
    assert str(bars["timestamp"].dt.tz) == "America/New_York"
    first = bars.groupby(bars["timestamp"].dt.date)["timestamp"].min()
    assert [t.strftime("%H:%M %z") for t in first] == ["09:30 -0500", "09:30 -0400", "09:30 -0400", "09:30 -0400"]
    assert bars["timestamp"].dt.strftime("%H:%M").str.match(r"09:[34]\d").all()
    # Volume roll forward on 03-12 and never back on 03-13, with the gap between contracts.
    assert _front(bars) == {"2024-03-08": "NQH4", "2024-03-11": "NQH4", "2024-03-12": "NQM4", "2024-03-13": "NQM4"}
    assert [(r["date"], r["from"], r["to"]) for r in report["rolls"]] == [("2024-03-12", "NQH4", "NQM4")]
    assert report["rolls"][0]["price_gap"] == pytest.approx(sample.m4_premium)
    # Spreads and other roots dropped, duplicate dropped, out-of-order rows sorted.
    assert not bars["symbol"].str.contains("-").any() and set(bars["symbol"]) == {"NQH4", "NQM4"}
    assert report["dropped"]["spread_rows"] == len(sample.days)
    assert report["dropped"]["other_symbol_rows"] == len(sample.days)
    assert report["dropped"]["duplicate_rows"] == 1
    assert bars["timestamp"].is_unique and bars["timestamp"].is_monotonic_increasing
    kinds = {r["kind"]: r for r in report["repairs"]}
    assert kinds["duplicate"]["count"] == 1 and kinds["out_of_order"]["count"] >= 1
    # 09:30 ET on 03-11 is 13:30 UTC: the stored price is the row written at that UTC minute.
    bar = bars[bars["timestamp"] == pd.Timestamp("2024-03-11 09:30", tz="America/New_York")].iloc[0]
    assert bar["open"] == pytest.approx(18010.0)
    on_disk = json.loads(Workspace.at(tmp_path / "ws").data_report_path("NQ").read_text())
    assert on_disk["rolls"] == report["rolls"] and on_disk["bars_sha256"] == sha256_file(
        Workspace.at(tmp_path / "ws").bars_path("NQ"))


def test_zip_with_folder_and_split_members(tmp_path: Path, config, sample, databento_csv) -> None:
    whole = pd.read_csv(databento_csv())
    archive = tmp_path / "GLBX-20240314-ABCDEF.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("GLBX-20240314-ABCDEF/metadata.json", "{}")
        for day in sample.days:
            part = whole[whole["ts_event"].str.startswith(day)]
            zf.writestr(f"GLBX-20240314-ABCDEF/glbx-mdp3-{day.replace('-', '')}.ohlcv-1m.csv", part.to_csv(index=False))
    report = import_market(tmp_path / "ws", archive, "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")
    assert report["source"]["kind"] == "databento" and len(report["source"]["members"]) == len(sample.days)
    assert len(bars) == len(sample.days) * sample.session_bars
    assert [r["to"] for r in report["rolls"]] == ["NQM4"]


def test_fixed_point_integer_prices(tmp_path: Path, config) -> None:
    ts = pd.date_range("2024-06-03 13:30", periods=5, freq="min", tz="UTC")
    px = [18_000_250_000_000, 18_001_000_000_000, 18_000_500_000_000, 18_002_000_000_000, 18_001_750_000_000]
    frame = pd.DataFrame({"ts_event": ts.strftime("%Y-%m-%dT%H:%M:%SZ"), "rtype": 33, "publisher_id": 1,
                          "instrument_id": 1, "open": px, "high": [p + 10**9 for p in px],
                          "low": [p - 10**9 for p in px], "close": px, "volume": 5, "symbol": "NQM4"})
    src = tmp_path / "nq_export.csv"  # recognised as Databento by its header, not its name
    frame.to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")
    assert report["source"]["price_format"] == "fixed_point_1e-9"
    assert bars["open"].tolist() == pytest.approx([p * 1e-9 for p in px])
