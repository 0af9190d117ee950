"""What must never pass silently: a wrong zone, bar-end stamps read as starts, holidays, the real close.

Each test builds its file from the fixture bars (``tests/fixtures/bars/render.py``) or imports a fixture file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradelab.errors import DataError
from tradelab.fileio import sha256_file
from tradelab.marketdata import generate_market, import_market, load_bars, load_market_arrays
from tradelab.marketdata.importer import ImportOptions
from tradelab.paths import Workspace

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bars"


def _render():
    spec = importlib.util.spec_from_file_location("render_bars", FIXTURES / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render():
    return _render()


def _firstrate_in(zone: str, render, folder: Path, *, full: bool = False, sessions: int = 5) -> Path:
    frame = render.bars(sessions, full=full)
    local = frame.assign(timestamp=frame["timestamp"].dt.tz_convert(zone))
    path = folder / f"firstrate_{zone.replace('/', '_')}.txt"
    path.write_text(render._rows(local, list(local["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"))))
    return path


def _one_line_refusal(root: Path, src: Path, config, options: ImportOptions) -> str:
    ws = Workspace.at(root)
    before = sha256_file(ws.bars_path("NQ")) if ws.bars_path("NQ").is_file() else None
    with pytest.raises(DataError) as info:
        import_market(root, src, "NQ", config, options)
    message = str(info.value)
    assert "\n" not in message and str(src) in message and "Nothing was written" in message
    assert (sha256_file(ws.bars_path("NQ")) if ws.bars_path("NQ").is_file() else None) == before
    return message


@pytest.mark.parametrize("full", [False, True], ids=["windows", "every_minute_11_sessions"])
def test_central_time_read_as_eastern_is_refused_naming_the_zone(tmp_path: Path, config, render,
                                                                 full: bool) -> None:
    src = _firstrate_in("America/Chicago", render, tmp_path, full=full, sessions=11 if full else 5)
    generate_market(tmp_path / "ws", "NQ", config, days=2, seed=1)  # bars a refused import must leave alone
    message = _one_line_refusal(tmp_path / "ws", src, config, ImportOptions())
    assert "read as America/Chicago wall time" in message and "pass --timezone America/Chicago" in message
    assert "--force-timezone" in message

    fixed = import_market(tmp_path / "ok", src, "NQ", config, ImportOptions(timezone="America/Chicago"))
    reference = import_market(tmp_path / "ref", _firstrate_in("America/New_York", render, tmp_path, full=full,
                                                              sessions=11 if full else 5), "NQ", config)
    assert fixed["self_check"]["status"] == "passed" and fixed["timezone"]["from"] == "--timezone"
    pd.testing.assert_frame_equal(load_bars(tmp_path / "ok", "NQ").drop(columns="symbol"),
                                  load_bars(tmp_path / "ref", "NQ").drop(columns="symbol"))
    assert fixed["rows"] == reference["rows"]

    forced = import_market(tmp_path / "forced", src, "NQ", config, ImportOptions(force_timezone=True))
    assert forced["self_check"]["status"] == "overridden" and forced["timezone"]["forced"] is True
    assert "America/Chicago" in forced["self_check"]["message"]


def test_end_stamps_read_as_starts_are_caught(tmp_path: Path, config, canonical_rth) -> None:
    src = FIXTURES / "NQ 12-23.Last.txt"
    message = _one_line_refusal(tmp_path / "ws", src, config, ImportOptions(stamp="start"))
    assert "bar-end stamps" in message and "pass --stamp end" in message and "--timezone" not in message
    # By the layout's own convention (bar end) the file imports, one minute earlier than its labels.
    report = import_market(tmp_path / "ok", src, "NQ", config)
    assert report["stamp"] == {"convention": "end", "from": "NinjaTrader 8 export default", "shifted_minutes": -1}
    pd.testing.assert_frame_equal(load_bars(tmp_path / "ok", "NQ")[canonical_rth.columns], canonical_rth)


def test_start_stamps_read_as_ends_are_caught(tmp_path: Path, config) -> None:
    message = _one_line_refusal(tmp_path / "ws", FIXTURES / "NQ_firstrate.txt", config, ImportOptions(stamp="end"))
    assert "pass --stamp start" in message


def test_a_file_without_the_open_is_inconclusive_not_refused(tmp_path: Path, config, sample) -> None:
    src = tmp_path / "night.csv"
    frame = sample.walk(60, start="2024-03-12 10:00")  # no bar near 09:30 or 16:00: nothing to compare with
    frame.to_csv(src, index=False)
    report = import_market(tmp_path / "ws", src, "NQ", config)
    assert report["self_check"]["status"] == "inconclusive" and report["rows"] == 60


def test_thanksgiving_is_dropped_from_regular_hours_and_halts_globex(tmp_path: Path, config) -> None:
    report = import_market(tmp_path / "rth", FIXTURES / "canonical.csv", "NQ", config)
    bars = load_bars(tmp_path / "rth", "NQ")
    dates = set(bars["session_close"].dt.strftime("%Y-%m-%d"))
    assert dates == {"2023-11-21", "2023-11-22", "2023-11-24", "2023-11-27"}
    # The holiday's regular-hours rows (09:30-09:39 and 12:55-12:59 of the fixture) are the ones counted.
    assert report["calendar"]["holidays_dropped"] == [{"date": "2023-11-23", "rows": 15}]
    assert report["dropped"]["holiday_rows"] == 15 and report["calendar"]["sessions"] == 4
    assert report["gaps"]["short_sessions"] == [] or all(s["date"] != "2023-11-23"
                                                          for s in report["gaps"]["short_sessions"])

    eth = import_market(tmp_path / "eth", FIXTURES / "canonical.csv", "NQ", config, ImportOptions(session="eth"))
    glob = load_bars(tmp_path / "eth", "NQ")
    thanksgiving = glob[glob["session_close"].dt.strftime("%Y-%m-%d") == "2023-11-23"]
    assert thanksgiving["session_close"].iloc[0].strftime("%H:%M") == "13:00"
    assert thanksgiving["timestamp"].max().strftime("%Y-%m-%d %H:%M") == "2023-11-23 12:59"
    assert eth["calendar"]["holidays_dropped"] == []


def test_the_early_close_ends_the_session_at_13_15(tmp_path: Path, config) -> None:
    report = import_market(tmp_path / "ws", FIXTURES / "canonical.csv", "NQ", config)
    assert report["calendar"]["early_closes"] == [{"date": "2023-11-24", "close": "2023-11-24T13:15:00-05:00"}]
    bars = load_bars(tmp_path / "ws", "NQ")
    friday = bars[bars["timestamp"].dt.strftime("%Y-%m-%d") == "2023-11-24"]
    assert friday["timestamp"].max().strftime("%H:%M") == "13:14"
    assert (friday["session_close"].dt.strftime("%H:%M") == "13:15").all()
    arrays = load_market_arrays(tmp_path / "ws", "NQ", config)
    last = int(np.flatnonzero(arrays.timestamps_ns == friday["timestamp"].iloc[-1].value)[0])
    frac = arrays.features[last, arrays.feature_names.index("session_frac")]
    assert frac == pytest.approx(224 / 225 - 0.5, abs=1e-6)  # 0.4956 at the real close, not 0.074


def _eth_dst_file(folder: Path) -> Path:
    """Bars around both 2024 DST weekends: Friday's session, the Sunday 18:00 open, midnight, Monday's close."""
    walls = []
    for friday, sunday, monday in (("2024-03-08", "2024-03-10", "2024-03-11"),
                                   ("2024-11-01", "2024-11-03", "2024-11-04")):
        for start, minutes in ((f"{friday} 09:25", 10), (f"{friday} 16:55", 5), (f"{friday} 17:30", 3),
                               (f"{sunday} 17:58", 6), (f"{sunday} 23:58", 4), (f"{monday} 09:28", 4),
                               (f"{monday} 16:58", 4)):
            walls += list(pd.date_range(start, periods=minutes, freq="min"))
    times = pd.DatetimeIndex(walls)
    minute = times.hour * 60 + times.minute
    volume = np.where((minute >= 570) & (minute < 960), 900, 30)
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M"), "open": 100.0, "high": 101.0,
                          "low": 99.0, "close": 100.5, "volume": volume})
    path = folder / "dst.csv"
    frame.to_csv(path, index=False)
    return path


def test_eth_sessions_cross_midnight_on_both_dst_weekends(tmp_path: Path, config) -> None:
    report = import_market(tmp_path / "ws", _eth_dst_file(tmp_path), "NQ", config, ImportOptions(session="eth"))
    bars = load_bars(tmp_path / "ws", "NQ")
    by_session = bars.groupby(bars["session_close"].dt.strftime("%Y-%m-%d"))
    opens = by_session["session_open"].first().dt.strftime("%Y-%m-%d %H:%M %z").to_dict()
    assert opens == {"2024-03-08": "2024-03-07 18:00 -0500", "2024-03-11": "2024-03-10 18:00 -0400",
                     "2024-11-01": "2024-10-31 18:00 -0400", "2024-11-04": "2024-11-03 18:00 -0500"}
    lengths = (by_session["session_close"].first() - by_session["session_open"].first()).dt.total_seconds() / 60
    assert lengths.tolist() == [1380.0] * 4  # 23 hours of wall time and of real time: the switch is at 02:00 Sunday
    monday = bars[bars["session_close"].dt.strftime("%Y-%m-%d") == "2024-03-11"]
    stamps = monday["timestamp"].dt.strftime("%m-%d %H:%M").tolist()
    assert stamps[:4] == ["03-10 18:00", "03-10 18:01", "03-10 18:02", "03-10 18:03"]
    assert "03-10 23:59" in stamps and "03-11 00:00" in stamps and stamps[-1] == "03-11 16:59"
    # Friday 17:30-17:32 (the daily break), Sunday 17:58-17:59 (weekend) and Monday 17:00-17:01 (after the close)
    # are outside every session.
    assert report["dropped"]["outside_session_rows"] == 2 * (3 + 2 + 2)
    arrays = load_market_arrays(tmp_path / "ws", "NQ", config)
    assert arrays.session_kind == "eth" and np.unique(arrays.session_id).size == 4
    midnight = int(np.flatnonzero(arrays.timestamps_ns == pd.Timestamp("2024-03-11 00:00", tz="America/New_York")
                                  .value)[0])
    assert arrays.session_id[midnight] == arrays.session_id[midnight - 1]  # one session across midnight


def test_regular_hours_keep_the_spec_hours_across_dst(tmp_path: Path, config) -> None:
    import_market(tmp_path / "ws", _eth_dst_file(tmp_path), "NQ", config)
    bars = load_bars(tmp_path / "ws", "NQ")
    assert set(bars["timestamp"].dt.strftime("%H:%M")) == {"09:30", "09:31", "09:32", "09:33", "09:34"}
    assert set(bars["session_close"].dt.strftime("%H:%M %z")) == {"16:00 -0500", "16:00 -0400"}


@pytest.fixture
def canonical_rth(tmp_path: Path, config) -> pd.DataFrame:
    import_market(tmp_path / "canonical", FIXTURES / "canonical.csv", "NQ", config)
    bars = load_bars(tmp_path / "canonical", "NQ")
    return bars[["timestamp", "open", "high", "low", "close", "volume", "session_open", "session_close"]]
