"""Column and value parsing shared by the Databento and generic readers.

Every failure raises :class:`~tradelab.errors.DataError` naming the file, the column, the offending value, where it
sits (file line for CSV, 0-based row for parquet) and how to fix it.

Timestamp rules:
    * Integers are epoch times. Databento files are always nanoseconds; for generic files the unit is inferred from
      the magnitude (``>= 1e17`` ns, ``>= 1e14`` us, ``>= 1e11`` ms, else seconds).
    * Strings with an offset or ``Z`` are converted to UTC.
    * Naive strings use the reader's ``naive_tz``: UTC for Databento (its timestamps are UTC by definition),
      America/New_York for generic files (exchange-local wall time, the way most charting exports write it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from tradelab.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

ET = "America/New_York"
"""The exchange time zone every stored timestamp is expressed in."""

OHLCV = ("open", "high", "low", "close", "volume")
"""Bar value columns, in stored order."""

_AWARE_RE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


def where(path: str | Path, row: int, *, csv: bool) -> str:
    """Human location of 0-based data row ``row``: the file line for CSV (header = line 1), else the row."""
    return f"line {row + 2}" if csv else f"row {row}"


def require_columns(
    frame: "pd.DataFrame", needed: tuple[str, ...], path: str | Path, kind: str, hint: str = ""
) -> None:
    """Raise if any of ``needed`` is missing from ``frame`` (``hint`` is appended to the message)."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: {kind} file is missing column(s) {missing}; found {list(frame.columns)}. "
            f"Expected at least {list(needed)} (header names are case-insensitive){hint}"
        )


def to_float(frame: "pd.DataFrame", column: str, path: str | Path, *, csv: bool) -> "pd.Series":
    """Column as float64; empty cells become NaN (dropped and reported later), text raises."""
    import pandas as pd

    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return raw.astype("float64")
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = values.isna() & raw.notna() & (raw.astype("str").str.strip() != "")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: column {column!r} at {where(path, row, csv=csv)} has value {raw.iloc[row]!r}, which is not a "
            f"number ({int(bad.sum())} such cells); fix or delete those rows"
        )
    return values


def _epoch_unit(magnitude: float) -> str:
    if magnitude >= 1e17:
        return "ns"
    if magnitude >= 1e14:
        return "us"
    if magnitude >= 1e11:
        return "ms"
    return "s"


def parse_timestamps(
    raw: "pd.Series", path: str | Path, column: str, *, naive_tz: str, csv: bool, integer_unit: str | None = None
) -> tuple["pd.Series", int]:
    """Parse a timestamp column to tz-aware UTC nanoseconds.

    Args:
        raw: The column as read.
        path: Source file (or ``archive.zip!member``), for messages.
        column: Column name, for messages.
        naive_tz: Zone that naive wall times are in.
        csv: Whether positions are reported as CSV lines.
        integer_unit: Unit of integer epochs; ``None`` infers it from the magnitude.

    Returns:
        The UTC series (NaT where the cell was empty or the local time does not exist / is ambiguous) and the count
        of local times dropped because of a daylight-saving change.

    Raises:
        DataError: A non-empty cell cannot be parsed, or aware and naive values are mixed.
    """
    import pandas as pd

    if pd.api.types.is_bool_dtype(raw):
        raise DataError(f"{path}: column {column!r} holds booleans, not timestamps; point it at the bar open time")
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw if getattr(raw.dt, "tz", None) is not None else _localize(raw, naive_tz)
        return _to_utc_ns(parsed), _dst_dropped(raw, parsed)
    if pd.api.types.is_numeric_dtype(raw):
        numbers = raw.astype("float64")
        unit = integer_unit or _epoch_unit(float(numbers.abs().median()) if numbers.notna().any() else 0.0)
        # Integer columns stay integers: float64 cannot hold epoch nanoseconds exactly.
        whole = raw.astype("Int64") if pd.api.types.is_integer_dtype(raw) else numbers.round().astype("Int64")
        parsed = pd.to_datetime(whole, unit=unit, utc=True)
        return _to_utc_ns(parsed), 0
    text = raw.astype("str").str.strip()
    empty = raw.isna() | (text == "") | text.str.lower().isin(["nan", "nat", "none"])
    aware = _has_offset(text) & ~empty
    if aware.any() and not aware[~empty].all():
        row = int((~aware & ~empty).to_numpy().nonzero()[0][0])
        raise DataError(
            f"{path}: column {column!r} mixes times with and without a UTC offset (e.g. {text.iloc[row]!r} at "
            f"{where(path, row, csv=csv)}); write every time with an offset, or none (then {naive_tz} is assumed)"
        )
    clean = text.where(~empty, None)
    if aware.any():
        parsed = _parse_text(clean, utc=True)
        _raise_unparsed(parsed, empty, text, path, column, csv=csv)
        return _to_utc_ns(parsed), 0
    naive = _parse_text(clean, utc=False)
    _raise_unparsed(naive, empty, text, path, column, csv=csv)
    local = _localize(naive, naive_tz)
    return _to_utc_ns(local), int((local.isna() & naive.notna()).sum())


def _has_offset(text: "pd.Series") -> "pd.Series":
    """Whether each string ends in ``Z`` or a UTC offset (the regex runs once per distinct 6-char ending)."""
    endings = text.str[-6:]
    distinct = endings.dropna().unique()
    aware = {e for e in distinct if _AWARE_RE.search(e)}
    return endings.isin(aware)


def _parse_text(text: "pd.Series", *, utc: bool) -> "pd.Series":
    import pandas as pd

    parsed = pd.to_datetime(text, format="ISO8601", utc=utc, errors="coerce")
    if parsed.isna().sum() > text.isna().sum():
        # Not ISO 8601 throughout: let pandas infer one format from the data (e.g. "01/02/2024 09:30").
        parsed = pd.to_datetime(text, utc=utc, errors="coerce")
    return parsed


def _raise_unparsed(
    parsed: "pd.Series", empty: "pd.Series", text: "pd.Series", path: str | Path, column: str, *, csv: bool
) -> None:
    """Raise on the first non-empty cell that did not parse."""
    bad = parsed.isna() & ~empty
    if not bad.any():
        return
    row = int(bad.to_numpy().nonzero()[0][0])
    raise DataError(
        f"{path}: column {column!r} at {where(path, row, csv=csv)} has unparseable timestamp {text.iloc[row]!r} "
        f"({int(bad.sum())} such cells); use ISO 8601 (e.g. 2024-03-11T13:30:00Z or 2024-03-11 09:30:00) or "
        f"integer epoch nanoseconds"
    )


def _localize(naive: "pd.Series", tz: str) -> "pd.Series":
    """Attach ``tz`` to naive times; wall times skipped or repeated by a DST change become NaT."""
    if getattr(naive.dt, "tz", None) is not None:
        return naive
    return naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")


def _dst_dropped(raw: "pd.Series", parsed: "pd.Series") -> int:
    return int((parsed.isna() & raw.notna()).sum())


def _to_utc_ns(series: "pd.Series") -> "pd.Series":
    return series.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
