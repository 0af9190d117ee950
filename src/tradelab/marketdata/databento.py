"""Reader for Databento GLBX.MDP3 OHLCV-1m exports: a ``.zip`` of ``*ohlcv-1m.csv`` files, or one such CSV.

Columns: ``ts_event, rtype, publisher_id, instrument_id, open, high, low, close, volume, symbol``. ``ts_event`` is
the bar's open time in UTC, as ISO 8601 text or integer nanoseconds. Prices are decimals (``pretty_px``) or
Databento's fixed-point integers (1 unit = 1e-9), told apart by the column type and magnitude. Source files are
opened read-only and never changed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError, MissingDependency
from tradelab.marketdata.parsing import OHLCV, parse_timestamps, require_columns, to_float
from tradelab.marketdata.textbars import BarFormat, header_tokens

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.marketdata.sources import Source

REQUIRED_COLUMNS = ("ts_event", "open", "high", "low", "close", "volume", "symbol")
"""Columns a Databento OHLCV file must have (``rtype``, ``publisher_id``, ``instrument_id`` are optional)."""

FIXED_POINT_UNIT = 1e-9
"""Databento's fixed-point price unit: an integer price of 18_000_250_000_000 means 18000.25."""

FIXED_POINT_MIN = 1e9
"""Integer prices at or above this are fixed-point (any price >= 1.0 encodes to >= 1e9 units)."""

MEMBER_SUFFIXES = ("ohlcv-1m.csv", "ohlcv-1m.csv.zst")
"""Names of the OHLCV members of a Databento archive."""

MAX_MEMBER_BYTES = 8 << 30
"""Largest uncompressed archive member read (8 GiB: years of every contract of one root fit well below it)."""

MAX_MEMBER_RATIO = 100
"""Largest uncompressed/compressed size ratio of a member past :data:`RATIO_FLOOR_BYTES`: OHLCV CSV deflates about
5-15x, so a member inflating 100x or more is a zip bomb, not market data."""

RATIO_FLOOR_BYTES = 32 << 20
"""Members up to this size are read whatever their ratio (tiny, highly repetitive files are harmless)."""


def read_databento(source: "Source", timezone: str = "UTC") -> tuple["pd.DataFrame", dict[str, Any]]:
    """Read a Databento OHLCV-1m zip or CSV into one frame (``timezone`` is unused: the times are UTC).

    Returns:
        ``(frame, info)``: frame columns ``ts`` (UTC), ``symbol``, OHLCV (float64) and ``source_row`` (0-based row
        over all members in name order); info has ``members``, ``price_format``, ``naive_times`` (False) and
        ``dst_dropped`` (0).

    Raises:
        DataError: The archive holds no ``*ohlcv-1m.csv``, a column is missing or a value cannot be parsed.
    """
    import pandas as pd

    if source.container == "zip" and not source.data:
        members = _zip_members(source.path)
        parts = [_read_member(source.path, name) for name in members]
    else:
        members = [source.path.name]
        parts = [_parse_frame(_read_csv(source.data, source.label, zst=False), source.label)]
    frame = pd.concat([p[0] for p in parts], ignore_index=True)
    frame["source_row"] = range(len(frame))
    info = {
        "members": members,
        "price_format": "fixed_point_1e-9" if any(p[1]["fixed_point"] for p in parts) else "decimal",
        "naive_times": False,
        "dst_dropped": 0,
    }
    return frame, info


def _zip_members(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc}); re-download the Databento export") from exc
    members = sorted(n for n in names if n.lower().endswith(MEMBER_SUFFIXES) and not n.startswith("__MACOSX"))
    if not members:
        raise DataError(
            f"{path}: the archive holds no '*ohlcv-1m.csv' file (found {names[:10]}); export GLBX.MDP3 with schema "
            f"ohlcv-1m and encoding csv, or pass the CSV itself"
        )
    return members


def member_limit(compressed_bytes: int) -> int:
    """The most bytes a member of ``compressed_bytes`` may inflate to (see :data:`MAX_MEMBER_RATIO`)."""
    return min(MAX_MEMBER_BYTES, max(RATIO_FLOOR_BYTES, compressed_bytes * MAX_MEMBER_RATIO))


def read_member(path: Path, name: str, fix: str) -> bytes:
    """Member ``name`` of the zip archive ``path``, read no further than :func:`member_limit` allows.

    Raises:
        DataError: The member would inflate past the limit, or the archive is damaged (``fix`` says what to do).
    """
    import zlib

    label = f"{path}!{name}"
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(name)
            limit = member_limit(info.compress_size)
            if info.file_size > limit:
                raise DataError(too_big_message(label, info.file_size, info.compress_size, limit))
            with archive.open(info) as member:
                # The header's size can lie: stop reading one byte past the limit whatever it claims.
                data = member.read(limit + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError) as exc:
        raise DataError(f"{label}: the archive is damaged ({exc}); {fix}") from exc
    if len(data) > limit:
        raise DataError(too_big_message(label, len(data), info.compress_size, limit))
    return data


def _read_member(path: Path, name: str) -> tuple["pd.DataFrame", dict[str, bool]]:
    label = f"{path}!{name}"
    data = read_member(path, name, "re-download the Databento export")
    return _parse_frame(_read_csv(data, label, zst=name.lower().endswith(".zst")), label)


def too_big_message(label: str, size: int, compressed: int, limit: int) -> str:
    return (f"{label}: inflates to {size:,} bytes or more from {compressed:,} compressed, over the {limit:,}-byte "
            f"limit for one member (at most {MAX_MEMBER_RATIO}x its compressed size, {MAX_MEMBER_BYTES >> 30} GiB "
            f"in all); this is not an OHLCV export. Unpack and check it, or import the CSV files themselves")


def _read_csv(data: bytes, label: str, *, zst: bool) -> "pd.DataFrame":
    import pandas as pd

    if zst:
        data = decompress_zst(data, label)
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype={"symbol": "str"}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{label}: cannot read as CSV ({exc}); check it is an uncorrupted Databento CSV") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{label}: has a header but no data rows; export a date range that holds bars")
    return frame


def decompress_zst(data: bytes, label: str) -> bytes:
    try:
        import zstandard
    except ImportError as exc:
        raise MissingDependency(
            f"{label}: is zstd-compressed and the 'zstandard' package is not installed; run 'zstd -d' on it first "
            f"or 'pip install zstandard'"
        ) from exc
    limit = member_limit(len(data))
    chunks, size = [], 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            while size <= limit and (chunk := reader.read(min(1 << 20, limit + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
    except zstandard.ZstdError as exc:
        raise DataError(f"{label}: not valid zstd data ({exc}); re-download the export") from exc
    if size > limit:
        raise DataError(too_big_message(label, size, len(data), limit))
    return b"".join(chunks)


def _parse_frame(raw: "pd.DataFrame", label: str) -> tuple["pd.DataFrame", dict[str, bool]]:
    import pandas as pd

    require_columns(raw, REQUIRED_COLUMNS, label, "Databento OHLCV-1m",
                    "; export with map_symbols=true so rows carry contract symbols, and encoding=csv")
    ts, _ = parse_timestamps(raw["ts_event"], label, "ts_event", naive_tz="UTC", csv=True, integer_unit="ns")
    out = pd.DataFrame({"ts": ts, "symbol": raw["symbol"].astype("str").str.strip()})
    fixed = all(pd.api.types.is_integer_dtype(raw[c]) for c in OHLCV[:4]) and bool(
        (raw["close"].abs() >= FIXED_POINT_MIN).all()
    )
    for column in OHLCV:
        values = to_float(raw, column, label, csv=True)
        out[column] = values * FIXED_POINT_UNIT if fixed and column != "volume" else values
    out.loc[raw["symbol"].isna(), "symbol"] = ""
    return out, {"fixed_point": fixed}


def matches(lines: list[str]) -> bool:
    """A header with Databento's ``ts_event`` and ``symbol`` columns."""
    return {"ts_event", "symbol"} <= set(header_tokens(lines[0]))


FORMAT = BarFormat(
    name="databento", label="Databento GLBX.MDP3 OHLCV-1m", timezone="UTC", stamp="start",
    layout="header ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol (UTC)",
    matches=matches, read=read_databento,
)
