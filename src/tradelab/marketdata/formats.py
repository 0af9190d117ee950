"""The bar layouts ``data import`` reads, and telling them apart by content (never by the file's extension).

Detection opens the container (:mod:`tradelab.marketdata.sources`), looks at the first lines, and asks each layout
in :data:`DETECTION_ORDER` whether they are its own: vendor headers first (they are also valid generic headers),
then header-less layouts from the most specific to the least. ``--format`` skips detection.
"""

from __future__ import annotations

from pathlib import Path

from tradelab.errors import DataError
from tradelab.marketdata import (
    barchart,
    databento,
    firstrate,
    generic,
    headerless,
    ibkr,
    kibot,
    ninjatrader,
    sierrachart,
    tradestation,
)
from tradelab.marketdata.sources import Source, is_zip, open_source, zip_members
from tradelab.marketdata.textbars import BarFormat

FORMATS: dict[str, BarFormat] = {
    module.FORMAT.name: module.FORMAT
    for module in (databento, firstrate, ninjatrader, tradestation, kibot, sierrachart, barchart, ibkr, generic,
                   headerless)
}
"""Every layout by its ``--format`` name."""

DETECTION_ORDER: tuple[str, ...] = (
    "databento", "tradestation", "sierrachart", "barchart", "ib", "generic",
    "ninjatrader", "firstrate", "kibot", "headerless",
)
"""Layouts in the order detection tries them."""

FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)
"""The ``--format`` choices."""

CONTAINERS = ".csv, .txt, .csv.gz, .zip (one file, or a Databento export), .csv.zst, .parquet"
"""Containers ``data import`` opens, for messages."""

DEFAULT_TIMEZONE = "America/New_York"
"""Zone of wall times a layout does not document (the exchange's own clock for US index futures)."""


def get_format(name: str) -> BarFormat:
    """The layout named ``name``.

    Raises:
        DataError: Unknown name (the message lists the choices).
    """
    try:
        return FORMATS[name]
    except KeyError:
        raise DataError(f"--format {name!r}: unknown layout; choose one of {', '.join(FORMAT_NAMES)}") from None


def open_bars(path: Path, name: str | None) -> tuple[BarFormat, Source, bool]:
    """Open ``path`` and find its layout.

    Args:
        path: The user's file.
        name: ``--format`` (None: detect from the content).

    Returns:
        ``(layout, source, detected)``; ``detected`` is False when ``--format`` chose it.

    Raises:
        DataError: The file cannot be opened, or no layout recognises its content.
    """
    fmt = get_format(name) if name is not None else None
    if is_zip(path):
        members = zip_members(path)
        if any(m.lower().endswith(databento.MEMBER_SUFFIXES) for m in members):
            if fmt not in (None, FORMATS["databento"]):
                raise DataError(f"{path}: a Databento export (its members are '*ohlcv-1m.csv'), not --format "
                                f"{fmt.name}; drop --format or pass --format databento")
            return FORMATS["databento"], Source(path, str(path), b"", "zip"), fmt is None
        if len(members) != 1:
            raise DataError(
                f"{path}: the archive holds no '*ohlcv-1m.csv' (Databento) file and {len(members)} other files "
                f"({members[:10]}); zip a single bar file, or unpack it and import the file itself"
            )
    source = open_source(path)
    if fmt is not None:
        return fmt, source, False
    return detect(source), source, True


def detect(source: Source) -> BarFormat:
    """The layout of ``source``'s content.

    Raises:
        DataError: No layout matches; the message shows the first line and the ``--format`` choices.
    """
    if source.is_parquet:
        return FORMATS["generic"]
    lines = source.head_lines()
    if lines:
        for name in DETECTION_ORDER:
            layout = FORMATS[name]
            if layout.matches is not None and layout.matches(lines):
                return layout
    first = lines[0][:80] if lines else ""
    suffix = "".join(source.path.suffixes[-2:]) or "(none)"
    zipped = (" The archive holds no '*ohlcv-1m.csv' (Databento) file, and its member is not a bar file either."
              if source.container == "zip" else "")
    raise DataError(
        f"{source.label}: cannot tell the bar layout from the content (first line {first!r}; name ends "
        f"{suffix!r}).{zipped} Known layouts: {', '.join(FORMAT_NAMES)} in {CONTAINERS}; pass --format NAME if it "
        f"is one of them, or save the bars as CSV with a header timestamp,open,high,low,close,volume"
    )
