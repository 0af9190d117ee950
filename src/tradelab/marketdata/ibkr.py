"""Interactive Brokers bars saved as CSV: ``date,open,high,low,close,volume,average,barCount``.

This is what ``ib_async``/``ib_insync``'s ``util.df(bars).to_csv()`` writes for ``reqHistoricalData``. ``date`` is
either an ISO time with a UTC offset (``2023-11-20 09:30:00-05:00``), or TWS's ``20231120  09:30:00`` (formatDate=1)
in the TWS login time zone, optionally followed by that zone's name (``20231120 09:30:00 US/Eastern``), which is
then used. A bar is stamped with its open time.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tradelab.errors import DataError
from tradelab.marketdata.parsing import parse_timestamps
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

NEEDED = ("date", "open", "high", "low", "close", "volume")
_TWS = re.compile(r"^(\d{8})\s+(\d{2}:\d{2}:\d{2})(?:\s+([A-Za-z_]+/[A-Za-z_]+))?$")


def matches(lines: list[str]) -> bool:
    """A header with date, OHLCV and IB's ``average`` and ``barCount``."""
    tokens = set(header_tokens(lines[0]))
    return set(NEEDED) <= tokens and {"average", "barcount"} <= tokens


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read an IB bar CSV; zone-less TWS times are placed in ``timezone`` (or the zone the rows name)."""
    raw = read_table(source, layout=FORMAT.label, header=True)
    require(raw, NEEDED, source.label, FORMAT.label)
    dates = raw["date"].str.strip()
    values = {c: raw[c] for c in NEEDED[1:]}
    parts = dates.str.extract(_TWS)
    if parts[0].notna().all():
        zones = parts[2].dropna().unique()
        zone = _row_zone(zones, source.label) if len(zones) else timezone
        naive = wall_times(parts[0] + " " + parts[1], ("%Y%m%d %H:%M:%S",), source.label, "date", first_line=2,
                           example="20231120  09:30:00")
        ts, dropped = localize(naive, zone)
        info = naive_info(dropped) if not len(zones) else {"naive_times": False, "dst_dropped": dropped,
                                                           "row_timezone": zone}
        return bar_frame(ts, values, source.label, first_line=2), info
    ts, dropped = parse_timestamps(dates, source.label, "date", naive_tz=timezone, csv=True)
    naive = not dates.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$").any()
    return bar_frame(ts, values, source.label, first_line=2), {"naive_times": naive, "dst_dropped": dropped}


def _row_zone(zones: Any, label: str) -> str:
    if len(zones) > 1:
        raise DataError(f"{label}: column 'date' names several time zones {sorted(zones)}; export in one zone")
    try:
        ZoneInfo(str(zones[0]))
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(f"{label}: column 'date' names the time zone {zones[0]!r}, which is not an IANA zone; "
                        f"remove it and pass --timezone") from None
    return str(zones[0])


FORMAT = BarFormat(
    name="ib", label="Interactive Brokers bars (CSV)", timezone=None, stamp="start",
    layout="header date,open,high,low,close,volume,average,barCount (ib_async util.df)",
    matches=matches, read=read,
)
