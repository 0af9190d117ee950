"""FirstRate Data futures files: ``2023-11-20 09:30:00,16010.25,16012.5,16009.75,16011,123`` (no header).

Columns ``DateTime, Open, High, Low, Close, Volume``. FirstRate documents its intraday files as US Eastern wall
time, each bar stamped with its open time; minutes without trades are omitted (gaps, not zero-volume bars).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tradelab.marketdata.textbars import BarFormat, bar_frame, localize, naive_info, read_table, split_fields, wall_times

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$")
COLUMNS = ("datetime", "open", "high", "low", "close", "volume")


def matches(lines: list[str]) -> bool:
    """A header-less line of a ``YYYY-MM-DD HH:MM[:SS]`` time and five numbers."""
    fields = split_fields(lines[0], ",")
    return len(fields) == 6 and _STAMP.match(fields[0]) is not None


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a FirstRate Data file; wall times are placed in ``timezone``."""
    raw = read_table(source, layout=FORMAT.label, header=False, names=COLUMNS)
    naive = wall_times(raw["datetime"], ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"), source.label, "datetime",
                       first_line=1, example="2023-11-20 09:30:00")
    ts, dropped = localize(naive, timezone)
    return bar_frame(ts, {c: raw[c] for c in COLUMNS[1:]}, source.label, first_line=1), naive_info(dropped)


FORMAT = BarFormat(
    name="firstrate", label="FirstRate Data", timezone="America/New_York", stamp="start",
    layout="no header: DateTime (YYYY-MM-DD HH:MM:SS), Open, High, Low, Close, Volume",
    matches=matches, read=read,
)
