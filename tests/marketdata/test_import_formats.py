"""Every vendor layout imports to exactly the bars of the canonical file, start-stamped in New York time.

The files in ``tests/fixtures/bars`` are one set of synthetic NQ bars (Thanksgiving week 2023, Globex hours with
the daily break, a regular-hours volume jump) rendered in each layout by ``tests/fixtures/bars/render.py``:
Databento (UTC), FirstRate, NinjaTrader 8 (semicolons, bar-end stamps), TradeStation (bar-end, Up/Down volume),
Kibot (zipped), Sierra Chart, Barchart (Central time, newest first, footer), Interactive Brokers and a gzipped
header-less OHLCV. Detection is by content: the extensions say nothing (``.txt``, ``.zip``, ``.csv.gz``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tradelab.errors import DataError
from tradelab.marketdata import import_market, load_bars
from tradelab.marketdata.importer import ImportOptions
from tradelab.paths import Workspace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bars"
FILES = {
    "databento": "glbx-mdp3-20231120.ohlcv-1m.csv",
    "firstrate": "NQ_firstrate.txt",
    "ninjatrader": "NQ 12-23.Last.txt",
    "tradestation": "NQ_tradestation.txt",
    "kibot": "NQ_kibot.zip",
    "sierrachart": "NQZ23_sierrachart.txt",
    "barchart": "nqz23_barchart.csv",
    "ib": "NQ_ib_bars.csv",
    "headerless": "NQ_headerless.csv.gz",
}
COMPARED = ["timestamp", "open", "high", "low", "close", "volume", "session_open", "session_close"]
STAMP = {"ninjatrader": "end", "tradestation": "end"}


def _import(tmp_path: Path, name: str, config, **options) -> tuple[dict, pd.DataFrame]:
    root = tmp_path / f"ws_{name}_{options.get('session', 'rth')}"
    report = import_market(root, FIXTURES / FILES.get(name, name), "NQ", config, ImportOptions(**options))
    return report, load_bars(root, "NQ")[COMPARED]


@pytest.fixture(scope="module")
def canonical(tmp_path_factory: pytest.TempPathFactory, config) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("canonical")
    out = {}
    for session in ("rth", "eth"):
        import_market(root / session, FIXTURES / "canonical.csv", "NQ", config, ImportOptions(session=session))
        out[session] = load_bars(root / session, "NQ")[COMPARED]
    return out


@pytest.mark.parametrize("session", ["rth", "eth"])
@pytest.mark.parametrize("name", list(FILES))
def test_each_layout_imports_to_the_canonical_bars(tmp_path: Path, config, canonical, name: str, session: str) -> None:
    report, bars = _import(tmp_path, name, config, session=session)
    assert report["source"]["format"] == name and report["source"]["detected"] is True
    assert report["stamp"]["convention"] == STAMP.get(name, "start")
    assert report["session"]["kind"] == session and report["self_check"]["status"] == "passed"
    pd.testing.assert_frame_equal(bars, canonical[session])
    assert str(bars["timestamp"].dt.tz) == "America/New_York"


def test_the_canonical_bars_are_what_the_file_says(canonical) -> None:
    text = pd.read_csv(FIXTURES / "canonical.csv")
    eth = canonical["eth"]
    assert eth["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S").tolist() == text["timestamp"].tolist()
    assert eth["close"].tolist() == text["close"].tolist() and eth["volume"].tolist() == text["volume"].tolist()


def test_layout_flag_and_report_fields(tmp_path: Path, config, canonical) -> None:
    report, bars = _import(tmp_path, "kibot", config, format="kibot")
    assert report["source"]["detected"] is False and report["source"]["container"] == "zip"
    assert report["timezone"] == {"name": "America/New_York", "from": "Kibot documents America/New_York",
                                  "naive_times": True, "forced": False}
    pd.testing.assert_frame_equal(bars, canonical["rth"])
    saved = Workspace.at(tmp_path / "ws_kibot_rth").data_report_path("NQ").read_text()
    for field in ('"format": "kibot"', '"convention": "start"', '"kind": "rth"', '"futures_calendar": "CME Globex '
                  'Equity"', '"status": "passed"'):
        assert field in saved
    with pytest.raises(DataError, match=r"NQ_firstrate.txt.*line 1.*not a time like '20231120 093100'"):
        _import(tmp_path, "firstrate", config, format="ninjatrader")


def test_barchart_defaults_to_central_time(tmp_path: Path, config) -> None:
    report, _ = _import(tmp_path, "barchart", config)
    assert report["timezone"]["name"] == "America/Chicago"
    assert report["source"]["newest_first"] is True and report["source"]["footer_rows"] == 1


def test_an_unknown_layout_names_the_choices(tmp_path: Path, config) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("my trading notes\nbought the dip\n")
    with pytest.raises(DataError) as info:
        import_market(tmp_path / "ws", src, "NQ", config)
    message = str(info.value)
    assert "cannot tell the bar layout" in message and "'my trading notes'" in message and "--format" in message
    assert "ninjatrader" in message and "\n" not in message
    assert not (tmp_path / "ws" / "data").exists()


def test_ib_rows_that_name_their_zone_use_it(tmp_path: Path, config, canonical) -> None:
    lines = (FIXTURES / FILES["ib"]).read_text().splitlines()
    rows = []
    for line in lines[1:]:
        stamp, rest = line.split(",", 1)
        central = pd.Timestamp(stamp).tz_localize("America/New_York").tz_convert("America/Chicago")
        rows.append(f"{central:%Y%m%d %H:%M:%S} US/Central,{rest}")
    src = tmp_path / "ib_central.csv"
    src.write_text("\n".join([lines[0], *rows]) + "\n")
    report = import_market(tmp_path / "ws", src, "NQ", config)
    assert report["source"]["format"] == "ib" and report["source"]["row_timezone"] == "US/Central"
    pd.testing.assert_frame_equal(load_bars(tmp_path / "ws", "NQ")[COMPARED], canonical["rth"])


def test_a_databento_archive_is_not_read_as_another_layout(tmp_path: Path, config) -> None:
    import zipfile

    src = tmp_path / "GLBX-1.zip"
    with zipfile.ZipFile(src, "w") as archive:
        archive.write(FIXTURES / FILES["databento"], "glbx-mdp3-20231120.ohlcv-1m.csv")
        archive.writestr("metadata.json", "{}")
    assert import_market(tmp_path / "ok", src, "NQ", config)["source"]["format"] == "databento"
    with pytest.raises(DataError, match="a Databento export .* --format databento"):
        import_market(tmp_path / "ws", src, "NQ", config, ImportOptions(format="kibot"))
