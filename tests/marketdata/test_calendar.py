"""The exchange calendar (pandas_market_calendars' CME Globex Equity + NYSE) and the synthetic market on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tradelab.marketdata import generate_market, load_bars, load_market_arrays
from tradelab.marketdata.calendar import et_iso, exchange_sessions, first_sessions
from tradelab.marketdata.synth import regime_labels, synthesize_bars
from tradelab.markets import contract_spec


def _times(table, field: str) -> list[str]:
    return [et_iso(int(x))[5:16] for x in getattr(table, field)]


def test_thanksgiving_week_regular_hours_and_globex() -> None:
    rth = exchange_sessions("rth", "2023-11-20", "2023-11-27")
    assert [str(d) for d in rth.dates] == ["2023-11-20", "2023-11-21", "2023-11-22", "2023-11-24", "2023-11-27"]
    assert _times(rth, "close_ns") == ["11-20T16:00", "11-21T16:00", "11-22T16:00", "11-24T13:15", "11-27T16:00"]
    assert rth.early_closes() == [{"date": "2023-11-24", "close": "2023-11-24T13:15:00-05:00"}]
    eth = exchange_sessions("eth", "2023-11-20", "2023-11-27")
    assert _times(eth, "open_ns")[2:] == ["11-21T18:00", "11-22T18:00", "11-23T18:00", "11-26T18:00"]
    assert _times(eth, "close_ns")[3:5] == ["11-23T13:00", "11-24T13:15"]  # the halt, then the early close


def test_cash_holidays_with_a_globex_halt_have_no_regular_session() -> None:
    dates = [str(d) for d in first_sessions("rth", "2024-01-02", 60).dates]
    assert "2024-01-15" not in dates and "2024-02-19" not in dates  # MLK and Presidents' Day: NYSE shut
    eth = exchange_sessions("eth", "2024-01-12", "2024-01-16")
    assert "2024-01-15" in [str(d) for d in eth.dates]  # Globex trades, halted at 13:00 ET
    assert _times(eth, "close_ns")[1] == "01-15T13:00"


def test_locate_puts_bars_in_their_session_or_nowhere() -> None:
    eth = exchange_sessions("eth", "2024-03-07", "2024-03-12")
    stamps = pd.DatetimeIndex(["2024-03-08 16:59", "2024-03-08 17:00", "2024-03-10 17:59", "2024-03-10 18:00",
                               "2024-03-11 00:00"]).tz_localize("America/New_York")
    index = eth.locate(stamps.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8)
    assert [str(eth.dates[i]) if i >= 0 else None for i in index] == ["2024-03-08", None, None, "2024-03-11",
                                                                        "2024-03-11"]


def test_the_synthetic_market_runs_on_the_calendar(tmp_path: Path, config) -> None:
    spec = contract_spec(config, "NQ")
    days = 128  # 2024-01-02 .. past 2024-07-03 (the day before Independence Day closes at 13:15 ET)
    bars, regimes = synthesize_bars(spec, "NQ", days=days, seed=5)
    dates = bars["timestamp"].dt.strftime("%Y-%m-%d")
    per_day = bars.groupby(dates).size()
    assert len(per_day) == days and "2024-01-15" not in per_day.index and "2024-03-29" not in per_day.index
    assert per_day["2024-07-03"] == 225 and (per_day.drop("2024-07-03") == 390).all()
    july3 = bars[dates == "2024-07-03"]
    assert july3["timestamp"].iloc[-1].strftime("%H:%M") == "13:14"
    assert (july3["session_close"].dt.strftime("%H:%M") == "13:15").all()
    assert len(regime_labels(spec, "NQ", days=days, seed=5)) == len(bars) == sum(regimes.values())
    report = generate_market(tmp_path, "NQ", config, days=days, seed=5)
    assert report["calendar"]["early_closes"] == [{"date": "2024-07-03", "close": "2024-07-03T13:15:00-04:00"}]
    assert report["session"]["kind"] == "rth" and report["gaps"]["short_sessions"] == []
    stored = load_bars(tmp_path, "NQ")
    assert np.array_equal(stored["close"].to_numpy(), bars["close"].to_numpy())
    arrays = load_market_arrays(tmp_path, "NQ", config)
    assert arrays.session_kind == "rth" and int(arrays.session_id.max()) == days - 1
