"""Reader for generic OHLCV files with a header (CSV or parquet), one row per 1-minute bar.

Header names are case-insensitive. The time column is the first of ``timestamp, ts, datetime, date_time, ts_event``
present, else ``date`` + ``time`` joined, else ``date`` or ``time`` alone; a parquet ``DatetimeIndex`` is used when
no such column exists. It is the bar's open time unless ``--stamp end`` says otherwise. Naive times are wall time
in ``--timezone`` (America/New_York by default); times with an offset (or ``Z``) are converted; integers are epoch times (unit inferred from magnitude, see
:mod:`tradelab.marketdata.parsing`). Wall times that a daylight-saving change skips or repeats are dropped and
counted. An optional ``symbol`` (or ``ticker``/``contract``) column enables the outright filter and volume roll.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError
from tradelab.marketdata.parsing import OHLCV, parse_timestamps, to_float
from tradelab.marketdata.textbars import BarFormat, header_tokens

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

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


def read_generic(source: "Source", timezone: str) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Read a generic OHLCV CSV (comma, semicolon or tab separated) or parquet file.

    Args:
        source: The opened file.
        timezone: Zone of naive wall times.

    Returns:
        ``(frame, info)``: frame columns ``ts`` (UTC), ``symbol`` (empty when the file has none), OHLCV (float64),
        ``source_row``; info has ``time_column``, ``naive_times`` and ``dst_dropped``.

    Raises:
        DataError: The file cannot be read, a column is missing or a value cannot be parsed.
    """
    import pandas as pd

    label = source.label
    csv = not source.is_parquet
    raw = _read_csv(source) if csv else _read_parquet(source)
    raw.columns = [str(c).strip().strip('"').lower() for c in raw.columns]
    if raw.empty:
        raise DataError(f"{label}: has a header but no data rows; add the bars (one row per minute) and import again")
    time_raw, time_name = _time_column(raw, label)
    names = {canon: _find(raw, canon) for canon in ALIASES}
    missing = [canon for canon in OHLCV if names[canon] is None]
    if missing:
        raise DataError(
            f"{label}: missing column(s) {missing} (found {list(raw.columns)}); a generic OHLCV file needs a time "
            f"column (one of {list(TIME_COLUMNS)} or date+time) and open, high, low, close, volume"
        )
    ts, dst_dropped = parse_timestamps(time_raw, label, time_name, naive_tz=timezone, csv=csv)
    out = pd.DataFrame({"ts": ts})
    symbol = names["symbol"]
    out["symbol"] = raw[symbol].astype("str").str.strip().where(raw[symbol].notna(), "") if symbol else ""
    for canon in OHLCV:
        out[canon] = to_float(raw, names[canon], label, csv=csv)
    out["source_row"] = range(len(out))
    info = {"time_column": time_name, "naive_times": _naive(time_raw), "dst_dropped": dst_dropped}
    return out, info


def _naive(raw: "pd.Series") -> bool:
    """Whether the time column holds zone-less wall times (not epochs, not offsets, not a tz-aware column)."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(raw):
        return getattr(raw.dt, "tz", None) is None
    if pd.api.types.is_numeric_dtype(raw):
        return False
    return not raw.astype("str").str.strip().str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$").any()


def matches(lines: list[str]) -> bool:
    """A header naming a time column and the OHLCV columns (any order, any case)."""
    for sep in (",", ";", "\t"):
        tokens = set(header_tokens(lines[0], sep))
        has_time = bool(tokens & set(TIME_COLUMNS)) or bool(tokens & {"date", "time"})
        if has_time and all(tokens & set(ALIASES[c]) for c in OHLCV):
            return True
    return False


def _read_csv(source: "Source") -> "pd.DataFrame":
    import pandas as pd

    first = source.head_lines(1)
    sep = max((",", ";", "\t"), key=lambda s: first[0].count(s)) if first else ","
    try:
        return pd.read_csv(source.text_stream(), sep=sep, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"{source.label}: cannot read as CSV ({exc}); save it as comma-separated UTF-8 with a header row"
        ) from exc


def _read_parquet(source: "Source") -> "pd.DataFrame":
    import pandas as pd

    try:
        frame = pd.read_parquet(source.text_stream())
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{source.label}: cannot read as parquet ({exc}); re-export it, or save it as CSV") from exc
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.reset_index(names=frame.index.name or "timestamp")
    return frame


def _find(raw: "pd.DataFrame", canon: str) -> str | None:
    return next((name for name in ALIASES[canon] if name in raw.columns), None)


def _time_column(raw: "pd.DataFrame", path: str) -> tuple["pd.Series", str]:
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


FORMAT = BarFormat(
    name="generic", label="generic OHLCV (header)", timezone=None, stamp="start",
    layout="a header naming a time column (timestamp/datetime/date+time) and open, high, low, close, volume; "
           "CSV or parquet",
    matches=matches, read=read_generic,
)
