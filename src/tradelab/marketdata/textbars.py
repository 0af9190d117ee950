"""What the vendor readers share: the format record, reading a text table, exact wall-time parsing, the frame.

A vendor reader returns the frame every reader returns (``ts`` UTC, ``symbol``, OHLCV float64, ``source_row``) and
an ``info`` dict with ``naive_times`` (the file wrote wall times without a zone, so ``timezone`` placed them) and
``dst_dropped`` (wall times a daylight-saving change skips or repeats in that zone; they cannot be placed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError
from tradelab.marketdata.parsing import OHLCV

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

Reader = Callable[["Source", str], tuple["pd.DataFrame", dict[str, Any]]]
"""``read(source, timezone) -> (frame, info)``."""


@dataclass(frozen=True)
class BarFormat:
    """One vendor layout.

    Attributes:
        name: The ``--format`` value.
        label: Human name.
        timezone: The zone the vendor documents for its wall times; None where the exporting platform writes its
            own setting's zone (then America/New_York is assumed and the self-check guards it).
        stamp: ``start`` (a bar is labelled with its open time) or ``end`` (with its close time), as documented.
        layout: One line describing the columns, for messages and the README.
        matches: Whether the first non-empty lines of a text file look like this layout (None: never detected).
        read: The reader.
    """

    name: str
    label: str
    timezone: str | None
    stamp: str
    layout: str
    matches: Callable[[list[str]], bool] | None
    read: Reader


def split_fields(line: str, sep: str) -> list[str]:
    """A line's fields, stripped of blanks and double quotes."""
    return [field.strip().strip('"').strip() for field in line.split(sep)]


def header_tokens(line: str, sep: str = ",") -> list[str]:
    """A header's lower-cased field names."""
    return [token.lower() for token in split_fields(line, sep)]


def is_number(text: str) -> bool:
    """Whether ``text`` is a plain decimal number."""
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text) is not None


def read_table(source: Source, *, layout: str, sep: str = ",", header: bool, names: Sequence[str] | None = None,
               ) -> pd.DataFrame:
    """The file as a frame of strings (lower-cased header names, or ``names`` for a header-less file).

    Raises:
        DataError: The text cannot be read, or it holds a header and no rows.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(source.text_stream(), sep=sep, header=0 if header else None, dtype=str,
                            names=None if header else list(names or []), skipinitialspace=True,
                            keep_default_na=False, encoding="utf-8-sig", index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{source.label}: cannot read as {layout} ({exc}); check the file is a complete, UTF-8 "
                        f"{layout}, or pass the right --format") from exc
    if header:
        frame.columns = [str(c).strip().strip('"').lower() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{source.label}: has a header but no data rows; export a date range that holds bars")
    return frame


def require(frame: pd.DataFrame, columns: Sequence[str], label: str, layout: str) -> None:
    """Raise when a named column is missing."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{label}: {layout} file is missing column(s) {missing} (found {list(frame.columns)}); "
                        f"export it with the standard columns, or pass the right --format")


def wall_times(text: pd.Series, formats: Sequence[str], label: str, column: str, *, first_line: int,
               example: str) -> pd.Series:
    """Parse wall times with the first of ``formats`` that reads every non-empty cell (naive ``datetime64``).

    Args:
        text: The time text (date and time joined with a space where the layout splits them).
        formats: ``strftime`` formats to try, in order.
        label: The file, for messages.
        column: Column name(s), for messages.
        first_line: File line of the first data row (2 with a header, 1 without).
        example: An example of the expected text, for the message.

    Raises:
        DataError: No format reads every cell; the message names the first cell the best one could not read.
    """
    import pandas as pd

    stripped = text.astype("str").str.strip()
    empty = stripped == ""
    best: pd.Series | None = None
    for fmt in formats:
        parsed = pd.to_datetime(stripped.where(~empty, None), format=fmt, errors="coerce")
        bad = parsed.isna() & ~empty
        if not bad.any():
            return parsed.astype("datetime64[ns]")
        if best is None or int(bad.sum()) < int((best.isna() & ~empty).sum()):
            best = parsed
    assert best is not None
    row = int((best.isna() & ~empty).to_numpy().nonzero()[0][0])
    raise DataError(f"{label}: column {column!r} at line {first_line + row} has {stripped.iloc[row]!r}, which is "
                    f"not a time like {example!r}; fix that row, or pass the --format the file really has")


def localize(naive: pd.Series, timezone: str) -> tuple[pd.Series, int]:
    """Naive wall times in ``timezone`` -> UTC; times a DST change skips or repeats become NaT (counted)."""
    local = naive.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    dropped = int((local.isna() & naive.notna()).sum())
    return local.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), dropped


def bar_frame(ts_utc: pd.Series, values: dict[str, pd.Series], label: str, *, first_line: int) -> pd.DataFrame:
    """The reader frame: ``ts``, ``symbol`` (empty), OHLCV as float64 and ``source_row``."""
    import pandas as pd

    out = pd.DataFrame({"ts": ts_utc.reset_index(drop=True)})
    out["symbol"] = ""
    for column in OHLCV:
        out[column] = numbers(values[column].reset_index(drop=True), column, label, first_line=first_line).to_numpy()
    out["source_row"] = range(len(out))
    return out


def numbers(raw: pd.Series, column: str, label: str, *, first_line: int) -> pd.Series:
    """A text column as float64: empty cells are NaN (dropped and reported later), text raises naming the line."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype("float64")
    text = raw.astype("str").str.strip()
    values = pd.to_numeric(text.where(text != "", None), errors="coerce").astype("float64")
    bad = values.isna() & (text != "")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{label}: column {column!r} at line {first_line + row} has value {text.iloc[row]!r}, which "
                        f"is not a number ({int(bad.sum())} such cells); fix or delete those rows")
    return values


def naive_info(dst_dropped: int, **extra: Any) -> dict[str, Any]:
    """``info`` of a reader whose file wrote zone-less wall times."""
    return {"naive_times": True, "dst_dropped": dst_dropped, **extra}
