"""Kibot intraday files: ``11/20/2023,09:30,16010.25,16012.5,16009.75,16011,123`` (no header).

Columns ``Date (mm/dd/yyyy), Time (hh:mm), Open, High, Low, Close, Volume``. Kibot documents its times as US
Eastern and a time stamp as the bar's open ("10:00 is the period between 10:00 and 10:01").
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tradelab.marketdata.textbars import BarFormat, bar_frame, localize, naive_info, read_table, split_fields, wall_times

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

COLUMNS = ("date", "time", "open", "high", "low", "close", "volume")


def matches(lines: list[str]) -> bool:
    """A header-less ``mm/dd/yyyy,hh:mm`` line with five numbers."""
    fields = split_fields(lines[0], ",")
    return (len(fields) == 7 and re.fullmatch(r"\d{2}/\d{2}/\d{4}", fields[0]) is not None
            and re.fullmatch(r"\d{2}:\d{2}", fields[1]) is not None)


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a Kibot file; wall times are placed in ``timezone``."""
    raw = read_table(source, layout=FORMAT.label, header=False, names=COLUMNS)
    naive = wall_times(raw["date"] + " " + raw["time"], ("%m/%d/%Y %H:%M",), source.label, "date+time",
                       first_line=1, example="11/20/2023 09:30")
    ts, dropped = localize(naive, timezone)
    return bar_frame(ts, {c: raw[c] for c in COLUMNS[2:]}, source.label, first_line=1), naive_info(dropped)


FORMAT = BarFormat(
    name="kibot", label="Kibot", timezone="America/New_York", stamp="start",
    layout="no header: Date (mm/dd/yyyy), Time (hh:mm), Open, High, Low, Close, Volume",
    matches=matches, read=read,
)
