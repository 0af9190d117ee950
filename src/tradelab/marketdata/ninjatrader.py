"""NinjaTrader 8 minute exports: ``20231120 093100;16010.25;16012.5;16009.75;16011;123`` (no header).

Columns ``yyyyMMdd HHmmss; Open; High; Low; Close; Volume`` separated by semicolons. NinjaTrader stamps a bar with
its *close* time (the bar of trades from 09:30:00 to 09:31:00 is ``20231120 093100``), so the default stamp is
``end``. The wall times are in the time zone NinjaTrader is set to (Tools > Options > General), which the file
does not say: America/New_York is assumed unless ``--timezone`` names another, and the import's volume self-check
refuses a zone that puts the open an hour off.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tradelab.marketdata.textbars import BarFormat, bar_frame, localize, naive_info, read_table, split_fields, wall_times

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

_STAMP = re.compile(r"^\d{8} \d{6}$")
COLUMNS = ("datetime", "open", "high", "low", "close", "volume")


def matches(lines: list[str]) -> bool:
    """A header-less ``yyyyMMdd HHmmss;o;h;l;c;v`` line."""
    fields = split_fields(lines[0], ";")
    return len(fields) == 6 and _STAMP.match(fields[0]) is not None


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a NinjaTrader 8 export; wall times are placed in ``timezone``."""
    raw = read_table(source, layout=FORMAT.label, sep=";", header=False, names=COLUMNS)
    naive = wall_times(raw["datetime"], ("%Y%m%d %H%M%S",), source.label, "datetime", first_line=1,
                       example="20231120 093100")
    ts, dropped = localize(naive, timezone)
    return bar_frame(ts, {c: raw[c] for c in COLUMNS[1:]}, source.label, first_line=1), naive_info(dropped)


FORMAT = BarFormat(
    name="ninjatrader", label="NinjaTrader 8 export", timezone=None, stamp="end",
    layout="no header, semicolons: yyyyMMdd HHmmss;Open;High;Low;Close;Volume (bar close time)",
    matches=matches, read=read,
)
