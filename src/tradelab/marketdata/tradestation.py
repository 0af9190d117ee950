"""TradeStation exports: ``"Date","Time","Open","High","Low","Close","Up","Down"`` then ``11/20/2023,09:31,...``.

``Up`` and ``Down`` are the volume traded on up-ticks and down-ticks; the bar's volume is their sum (an export with
``Vol`` instead is read the same way). TradeStation stamps an intraday bar with its *close* time, so the default
stamp is ``end``. The wall times follow the chart's time-zone setting (Local or Exchange), which the file does not
say: America/New_York is assumed unless ``--timezone`` names another, and the volume self-check guards the choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError
from tradelab.marketdata.textbars import (
    BarFormat,
    bar_frame,
    header_tokens,
    localize,
    naive_info,
    numbers,
    read_table,
    require,
    wall_times,
)

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

HEAD = ("date", "time", "open", "high", "low", "close")


def matches(lines: list[str]) -> bool:
    """A ``Date,Time,Open,High,Low,Close,Up,Down`` header."""
    tokens = header_tokens(lines[0])
    return tuple(tokens[:6]) == HEAD and "up" in tokens and "down" in tokens


def read(source: Source, timezone: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a TradeStation export; wall times are placed in ``timezone``."""
    raw = read_table(source, layout=FORMAT.label, header=True)
    require(raw, HEAD, source.label, FORMAT.label)
    time = raw["time"].str.strip()
    time = time.where(time.str.contains(":"), time.str.zfill(4).str[:2] + ":" + time.str.zfill(4).str[2:])
    naive = wall_times(raw["date"] + " " + time, ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S"), source.label,
                       "Date+Time", first_line=2, example="11/20/2023 09:31")
    ts, dropped = localize(naive, timezone)
    values = {c: raw[c] for c in HEAD[2:]}
    values["volume"] = _volume(raw, source.label)
    return bar_frame(ts, values, source.label, first_line=2), naive_info(dropped)


def _volume(raw: pd.DataFrame, label: str) -> pd.Series:
    if "up" in raw.columns and "down" in raw.columns:
        up = numbers(raw["up"], "Up", label, first_line=2)
        down = numbers(raw["down"], "Down", label, first_line=2)
        return up + down
    for name in ("vol", "volume"):
        if name in raw.columns:
            return raw[name]
    raise DataError(f"{label}: TradeStation export has no Up/Down or Vol columns (found {list(raw.columns)}); "
                    f"export with volume")


FORMAT = BarFormat(
    name="tradestation", label="TradeStation export", timezone=None, stamp="end",
    layout='header "Date","Time","Open","High","Low","Close","Up","Down" (mm/dd/yyyy, hh:mm bar close time)',
    matches=matches, read=read,
)
