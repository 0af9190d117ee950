"""Any header-less OHLCV text: ``date, time, open, high, low, close, volume[, ...]`` or ``datetime, open, ...``.

Commas, semicolons or tabs. The date and time are read by pandas' own inference (any one consistent format), as
wall times in ``--timezone`` (America/New_York by default); a bar is taken to be stamped with its open time unless
``--stamp end`` says otherwise. Columns after the volume are ignored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError
from tradelab.marketdata.parsing import parse_timestamps
from tradelab.marketdata.textbars import BarFormat, bar_frame, is_number, read_table, split_fields

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

SEPARATORS = (",", ";", "\t")
_DATE = re.compile(r"^(\d{4}[-/.]?\d{2}[-/.]?\d{2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})$")
_TIME = re.compile(r"^\d{1,2}:?\d{2}(:?\d{2}(\.\d+)?)?$")


def layout_of(line: str) -> tuple[str, int] | None:
    """``(separator, time columns)`` of a header-less bar line (1: one datetime field, 2: date and time), or None."""
    for sep in SEPARATORS:
        fields = split_fields(line, sep)
        if len(fields) >= 7 and _DATE.match(fields[0]) and _TIME.match(fields[1]) and all(
                is_number(f) for f in fields[2:7]):
            return sep, 2
        if len(fields) >= 6 and (" " in fields[0] or "T" in fields[0]):
            date, _, time = fields[0].replace("T", " ").partition(" ")
            if _DATE.match(date) and _TIME.match(time.split("+")[0].split("Z")[0]) and all(
                    is_number(f) for f in fields[1:6]):
                return sep, 1
    return None


def matches(lines: list[str]) -> bool:
    """A first line of date/time fields and five numbers."""
    return layout_of(lines[0]) is not None


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a header-less OHLCV file; zone-less times are placed in ``timezone``."""
    lines = source.head_lines(1)
    found = layout_of(lines[0]) if lines else None
    if found is None:
        raise DataError(f"{source.label}: the first line {lines[:1]} is not date, time, open, high, low, close, "
                        f"volume; fix the file, or pass the --format it has")
    sep, time_columns = found
    width = len(split_fields(lines[0], sep))
    names = [f"c{i}" for i in range(width)]
    raw = read_table(source, layout="header-less OHLCV", sep=sep, header=False, names=names)
    if time_columns == 2:
        text = raw["c0"].str.strip() + " " + raw["c1"].str.strip()
    else:
        text = raw["c0"].str.strip()
    ts, dropped = parse_timestamps(text, source.label, "date+time" if time_columns == 2 else "datetime",
                                   naive_tz=timezone, csv=False)
    naive = not text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$").any()
    first = time_columns
    values = dict(zip(("open", "high", "low", "close", "volume"), (raw[f"c{first + k}"] for k in range(5))))
    return bar_frame(ts, values, source.label, first_line=1), {"naive_times": naive, "dst_dropped": dropped,
                                                              "time_columns": time_columns}


FORMAT = BarFormat(
    name="headerless", label="header-less OHLCV", timezone=None, stamp="start",
    layout="no header: date, time (or one datetime), open, high, low, close, volume",
    matches=matches, read=read,
)
