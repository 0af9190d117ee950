"""Sierra Chart text exports: ``Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume``.

Rows like ``2023/11/20, 09:30:00.000000, 16010.25, ...``; ``Last`` is the close. Sierra Chart stamps a bar with its
start time, in the time zone of its Global Settings (New York by default), which the file does not say: America/
New_York is assumed unless ``--timezone`` names another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradelab.marketdata.textbars import (
    BarFormat,
    bar_frame,
    header_tokens,
    localize,
    naive_info,
    read_table,
    require,
    wall_times,
)

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

HEAD = ("date", "time", "open", "high", "low", "last", "volume")


def matches(lines: list[str]) -> bool:
    """A ``Date, Time, Open, High, Low, Last, Volume`` header."""
    return tuple(header_tokens(lines[0])[:7]) == HEAD


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a Sierra Chart export; wall times are placed in ``timezone``."""
    raw = read_table(source, layout=FORMAT.label, header=True)
    require(raw, HEAD, source.label, FORMAT.label)
    text = raw["date"].str.strip().str.replace("-", "/") + " " + raw["time"].str.strip()
    naive = wall_times(text, ("%Y/%m/%d %H:%M:%S.%f", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M"), source.label,
                       "Date+Time", first_line=2, example="2023/11/20 09:30:00.000000")
    ts, dropped = localize(naive, timezone)
    values = {"open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["last"],
              "volume": raw["volume"]}
    return bar_frame(ts, values, source.label, first_line=2), naive_info(dropped)


FORMAT = BarFormat(
    name="sierrachart", label="Sierra Chart text export", timezone=None, stamp="start",
    layout="header Date, Time, Open, High, Low, Last, Volume, NumberOfTrades, BidVolume, AskVolume",
    matches=matches, read=read,
)
