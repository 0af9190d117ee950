"""Barchart.com downloads: ``Time,Open,High,Low,Last,Change,%Chg,Volume``, newest bar first, with a footer line.

Rows like ``11/20/2023 09:30,16010.25,...`` (or ``2023-11-20 09:30``); ``Last`` is the close; the last line reads
``Downloaded from Barchart.com as of ...`` and is skipped. Barchart documents futures times as US Central, and a
bar's time as its open; the rows are put in time order here (the newest-first order is the layout, not a repair).
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

NEEDED = ("time", "open", "high", "low", "last", "volume")


def matches(lines: list[str]) -> bool:
    """A header with Time, Open, High, Low, Last, Volume and Barchart's Change or %Chg."""
    tokens = set(header_tokens(lines[0]))
    return set(NEEDED) <= tokens and bool(tokens & {"change", "%chg"})


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a Barchart download; wall times are placed in ``timezone``."""
    raw = read_table(source, layout=FORMAT.label, header=True)
    require(raw, NEEDED, source.label, FORMAT.label)
    footer = raw["time"].str.strip().str.lower().str.startswith("downloaded")
    raw = raw[~footer].reset_index(drop=True)
    naive = wall_times(raw["time"], ("%m/%d/%Y %H:%M", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S"),
                       source.label, "Time", first_line=2, example="11/20/2023 09:30")
    newest_first = len(naive) > 1 and bool(naive.iloc[0] > naive.iloc[-1])
    if newest_first:
        raw, naive = raw.iloc[::-1].reset_index(drop=True), naive.iloc[::-1].reset_index(drop=True)
    ts, dropped = localize(naive, timezone)
    values = {"open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["last"],
              "volume": raw["volume"]}
    frame = bar_frame(ts, values, source.label, first_line=2)
    if newest_first:
        frame["source_row"] = range(len(frame) - 1, -1, -1)  # 0 = the first data row in the file
    return frame, naive_info(dropped, footer_rows=int(footer.sum()), newest_first=newest_first)


FORMAT = BarFormat(
    name="barchart", label="Barchart download", timezone="America/Chicago", stamp="start",
    layout="header Time,Open,High,Low,Last,Change,%Chg,Volume (newest first, footer line)",
    matches=matches, read=read,
)
