"""Bad input fails with a DataError naming file, field, value and fix; sources and stored bars stay untouched."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tradelab.errors import DataError
from tradelab.fileio import sha256_file
from tradelab.marketdata import generate_market, import_market
from tradelab.paths import Workspace


@pytest.fixture
def workspace(tmp_path: Path, config) -> Path:
    """A workspace that already holds generated NQ bars (which a failed import must not replace)."""
    root = tmp_path / "ws"
    generate_market(root, "NQ", config, days=2, seed=1)
    return root


def _fails(root: Path, src: Path, config, *fragments: str) -> str:
    ws = Workspace.at(root)
    before_bars, before_src = sha256_file(ws.bars_path("NQ")), sha256_file(src)
    with pytest.raises(DataError) as info:
        import_market(root, src, "NQ", config)
    message = str(info.value)
    assert str(src.name) in message
    for fragment in fragments:
        assert fragment in message, message
    assert sha256_file(ws.bars_path("NQ")) == before_bars
    assert sha256_file(src) == before_src
    assert not list(ws.data_dir("NQ").glob("*.tmp"))
    return message


def test_missing_columns_are_listed(tmp_path: Path, workspace: Path, config) -> None:
    src = tmp_path / "x.ohlcv-1m.csv"
    src.write_text("ts_event,open,high,close,symbol\n2024-03-08T14:30:00Z,1,2,1,NQH4\n")
    _fails(workspace, src, config, "missing column", "'low'", "'volume'")


def test_unparseable_timestamp_names_the_line(tmp_path: Path, workspace: Path, config, sample) -> None:
    frame = sample.walk(5)
    frame["timestamp"] = frame["timestamp"].astype(str)
    frame.loc[3, "timestamp"] = "2024-03-08 9h33"
    src = tmp_path / "bad_time.csv"
    frame.to_csv(src, index=False)
    _fails(workspace, src, config, "'timestamp'", "line 5", "'2024-03-08 9h33'", "ISO 8601")


def test_non_numeric_price_names_the_line(tmp_path: Path, workspace: Path, config, databento_csv) -> None:
    src = databento_csv()
    text = src.read_text().splitlines()
    fields = text[3].split(",")
    fields[4] = "n/a?"
    text[3] = ",".join(fields)
    src.write_text("\n".join(text) + "\n")
    _fails(workspace, src, config, "'open'", "line 4", "'n/a?'", "not a number")


def test_zip_without_ohlcv_member(tmp_path: Path, workspace: Path, config) -> None:
    src = tmp_path / "export.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("export/trades.csv", "a,b\n1,2\n")
    _fails(workspace, src, config, "ohlcv-1m.csv", "export/trades.csv")


def test_wrong_root_symbol(tmp_path: Path, workspace: Path, config, sample) -> None:
    rows = sample.rows()
    src = sample.to_csv(rows[rows["symbol"] == "ESH4"], tmp_path / "es.ohlcv-1m.csv", integer_ns=True)
    _fails(workspace, src, config, "'symbol'", "'NQ'", "ESH4", "--market")


def test_unsupported_type_and_missing_file(tmp_path: Path, workspace: Path, config) -> None:
    src = tmp_path / "bars.xlsx"
    src.write_bytes(b"not really")
    _fails(workspace, src, config, "'.xlsx'", ".parquet")
    src = tmp_path / "broken.parquet"
    src.write_bytes(b"PAR1 but not really")
    _fails(workspace, src, config, "cannot read as parquet", "save it as CSV")
    with pytest.raises(DataError, match="no such file"):
        import_market(workspace, tmp_path / "absent.csv", "NQ", config)


def test_no_session_bars_and_wrong_frequency(tmp_path: Path, workspace: Path, config, sample) -> None:
    night = sample.walk(30, start="2024-03-08 20:00")
    src = tmp_path / "night.csv"
    night.to_csv(src, index=False)
    _fails(workspace, src, config, "no bars left inside the session", "09:30-16:00")
    hourly = sample.walk(6).assign(timestamp=pd.date_range("2024-03-08 09:30", periods=6, freq="h"))
    src = tmp_path / "hourly.csv"
    hourly.to_csv(src, index=False)
    _fails(workspace, src, config, "3600 seconds apart", "resample to 1-minute")


def test_a_zip_member_with_a_bad_crc_is_a_data_error(tmp_path: Path, workspace: Path, config, databento_csv) -> None:
    src = tmp_path / "crc.zip"
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("glbx.ohlcv-1m.csv", databento_csv().read_bytes())
    data = bytearray(src.read_bytes())
    data[data.index(b"NQH4")] = ord("X")  # stored member: one changed byte breaks its CRC-32
    src.write_bytes(bytes(data))
    _fails(workspace, src, config, "glbx.ohlcv-1m.csv", "damaged", "re-download")


def test_a_zip_member_that_inflates_past_the_cap_is_refused(tmp_path: Path, workspace: Path, config,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from tradelab.marketdata import databento

    monkeypatch.setattr(databento, "RATIO_FLOOR_BYTES", 1 << 20)
    src = tmp_path / "bomb.zip"
    with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("glbx.ohlcv-1m.csv", b"ts_event,open\n" + b"0" * (4 << 20))
    _fails(workspace, src, config, "inflates to", "limit", "100x")


def test_a_header_only_file_says_it_has_no_rows(tmp_path: Path, workspace: Path, config) -> None:
    generic = tmp_path / "empty.csv"
    generic.write_text("timestamp,open,high,low,close,volume\n")
    _fails(workspace, generic, config, "header but no data rows")
    databento_file = tmp_path / "empty.ohlcv-1m.csv"
    databento_file.write_text("ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol\n")
    _fails(workspace, databento_file, config, "header but no data rows")
