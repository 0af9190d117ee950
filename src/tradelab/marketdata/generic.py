"""Reader for generic OHLCV files (CSV or parquet), one row per 1-minute bar.

Header names are case-insensitive. The time column is the first of ``timestamp, ts, datetime, date_time, ts_event``
present, else ``date`` + ``time`` joined, else ``date`` or ``time`` alone; a parquet ``DatetimeIndex`` is used when
no such column exists. It is the bar's open time. Naive times are America/New_York wall time; times with an offset
(or ``Z``) are converted; integers are epoch times (unit inferred from magnitude, see
:mod:`tradelab.marketdata.parsing`). Wall times that a daylight-saving change skips or repeats are dropped and
counted. An optional ``symbol`` (or ``ticker``/``contract``) column enables the outright filter and volume roll.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError
from tradelab.marketdata.parsing import ET, OHLCV, parse_timestamps, to_float

if TYPE_CHECKING:
    import pandas as pd

TIME_COLUMNS = ("timestamp", "ts", "datetime", "date_time", "ts_event")
"""Accepted names of a single time column, in order of preference."""

ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c", "last"),
    "volume": ("volume", "vol", "v"),
    "symbol": ("symbol", "ticker", "contract"),
}
"""Accepted header names per canonical column."""


def read_generic(path: Path) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Read a generic OHLCV CSV or parquet file.

    Returns:
        ``(frame, info)``: frame columns ``ts`` (UTC), ``symbol`` (empty when the file has none), OHLCV (float64),
        ``source_row``; info has ``time_column``, ``timezone_rule`` and ``dst_dropped``.

    Raises:
        DataError: The file cannot be read, a column is missing or a value cannot be parsed.
    """
    import pandas as pd

    csv = path.suffix.lower() != ".parquet"
    raw = _read_csv(path) if csv else _read_parquet(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if raw.empty:
        raise DataError(f"{path}: has a header but no data rows; add the bars (one row per minute) and import again")
    time_raw, time_name = _time_column(raw, path)
    names = {canon: _find(raw, canon) for canon in ALIASES}
    missing = [canon for canon in OHLCV if names[canon] is None]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing} (found {list(raw.columns)}); a generic OHLCV file needs a time "
            f"column (one of {list(TIME_COLUMNS)} or date+time) and open, high, low, close, volume"
        )
    ts, dst_dropped = parse_timestamps(time_raw, path, time_name, naive_tz=ET, csv=csv)
    out = pd.DataFrame({"ts": ts})
    symbol = names["symbol"]
    out["symbol"] = raw[symbol].astype("str").str.strip().where(raw[symbol].notna(), "") if symbol else ""
    for canon in OHLCV:
        out[canon] = to_float(raw, names[canon], path, csv=csv)
    out["source_row"] = range(len(out))
    info = {
        "time_column": time_name,
        "timezone_rule": "naive times are America/New_York wall time; times with an offset are converted",
        "dst_dropped": dst_dropped,
    }
    return out, info


def _read_csv(path: Path) -> "pd.DataFrame":
    import pandas as pd

    try:
        return pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read as CSV ({exc}); save it as comma-separated UTF-8 with a header row"
        ) from exc


def _read_parquet(path: Path) -> "pd.DataFrame":
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: cannot read as parquet ({exc}); re-export it, or save it as CSV") from exc
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.reset_index(names=frame.index.name or "timestamp")
    return frame


def _find(raw: "pd.DataFrame", canon: str) -> str | None:
    return next((name for name in ALIASES[canon] if name in raw.columns), None)


def _time_column(raw: "pd.DataFrame", path: Path) -> tuple["pd.Series", str]:
    for name in TIME_COLUMNS:
        if name in raw.columns:
            return raw[name], name
    if "date" in raw.columns and "time" in raw.columns:
        joined = raw["date"].astype("str").str.strip() + " " + raw["time"].astype("str").str.strip()
        return joined.where(raw["date"].notna() & raw["time"].notna(), None), "date+time"
    for name in ("date", "time"):
        if name in raw.columns:
            return raw[name], name
    raise DataError(
        f"{path}: no time column (found {list(raw.columns)}); name the bar open time one of {list(TIME_COLUMNS)}, "
        f"or provide 'date' and 'time' columns"
    )
