"""The stored market: ``data/<MKT>/bars_1m.parquet`` plus ``data_report.json``; listing and loading.

Stored bars have columns ``timestamp`` (tz-aware America/New_York, bar open time, nanoseconds), ``open``, ``high``,
``low``, ``close``, ``volume`` (float64) and ``symbol`` (the contract traded). Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError, StageNotReady
from tradelab.io import atomic_write_bytes, atomic_write_json
from tradelab.marketdata.parsing import ET
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, utc_now

if TYPE_CHECKING:
    import pandas as pd

BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "symbol")
"""Columns of ``bars_1m.parquet``, in order."""


def not_ready(root: str | Path, market: str) -> StageNotReady:
    """The error for a market without bars, naming both ways to create them."""
    path = Workspace.at(root).bars_path(market)
    return StageNotReady(
        f"no market data for {market} ({path} does not exist): run `python main.py data generate --market {market}` "
        f"for the synthetic default, or `python main.py data import PATH --market {market}` for your own bars"
    )


def write_market(root: str | Path, market: str, bars: "pd.DataFrame", report: dict[str, Any]) -> dict[str, Any]:
    """Write the bars parquet and its report atomically; return the report as written.

    Args:
        root: Workspace root.
        market: Market name.
        bars: Frame with :data:`BAR_COLUMNS` (timestamp tz-aware ET), sorted, unique times.
        report: Report fields; ``market``, ``bars_path``, ``bars_sha256``, ``rows``, ``start``, ``end`` and
            ``created_at`` are filled in here.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ws = Workspace.at(root)
    frame = bars.loc[:, list(BAR_COLUMNS)].reset_index(drop=True)
    frame["timestamp"] = frame["timestamp"].astype(f"datetime64[ns, {ET}]")
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    data = buffer.getvalue()
    bars_path = ws.bars_path(market)
    full = {
        "schema_version": SCHEMA_VERSION,
        "market": market,
        "created_at": utc_now(),
        "bars_path": str(bars_path),
        "bars_sha256": hashlib.sha256(data).hexdigest(),
        "rows": int(len(frame)),
        "start": frame["timestamp"].iloc[0].isoformat(),
        "end": frame["timestamp"].iloc[-1].isoformat(),
        **report,
    }
    atomic_write_bytes(bars_path, data)
    atomic_write_json(ws.data_report_path(market), full)
    return full


def load_bars(root: str | Path, market: str) -> "pd.DataFrame":
    """The stored bars of ``market`` (see module docstring for the columns).

    Raises:
        StageNotReady: The market has no bars yet.
        DataError: The bar file is unreadable or lacks a column.
    """
    import pandas as pd

    path = Workspace.at(root).bars_path(market)
    if not path.is_file():
        raise not_ready(root, market)
    try:
        bars = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(
            f"{path}: cannot read the bar file ({exc}); re-run `python main.py data import` or `data generate` "
            f"for {market}"
        ) from exc
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if not missing and getattr(bars["timestamp"].dt, "tz", None) is None:
        missing = ["a tz-aware timestamp"]
    if missing:
        raise DataError(
            f"{path}: not a tradelab bar file (missing {missing}); re-create it with "
            f"`python main.py data import PATH --market {market}` or `data generate --market {market}`"
        )
    bars["timestamp"] = bars["timestamp"].dt.tz_convert(ET).astype(f"datetime64[ns, {ET}]")
    return bars


def read_report(root: str | Path, market: str) -> dict[str, Any] | None:
    """The market's ``data_report.json``, or None when absent or unreadable."""
    path = Workspace.at(root).data_report_path(market)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def market_origin(root: str | Path, market: str) -> dict[str, Any]:
    """Which market the bars are: ``{kind, generator_version, edge, seed}`` (imports: kind only, edge None).

    Every report carries this, so a figure can always be traced to the null market, a planted edge, or real data.
    """
    source = (read_report(root, market) or {}).get("source", {})
    kind = str(source.get("kind", "unknown"))
    if kind != "synthetic":
        return {"kind": kind, "generator_version": None, "edge": None, "seed": None}
    return {"kind": kind, "generator_version": source.get("generator_version", 1),
            "edge": float(source.get("edge", 0.0)), "seed": source.get("seed")}


def list_markets(root: str | Path) -> list[dict[str, Any]]:
    """Every market with bars: ``[{market, rows, start, end, source, path}]``, sorted by market."""
    ws = Workspace.at(root)
    out: list[dict[str, Any]] = []
    for market in ws.markets_with_data():
        report = read_report(root, market) or {}
        source = report.get("source", {}).get("kind", "unknown")
        if source == "synthetic":
            source = f"synthetic edge={float(report['source'].get('edge', 0.0)):g}"
        if {"rows", "start", "end"} <= report.keys():
            rows, start, end = report["rows"], report["start"], report["end"]
        else:
            rows, start, end = _summary_from_parquet(ws.bars_path(market))
        out.append({"market": market, "rows": rows, "start": start, "end": end, "source": source,
                    "path": str(ws.bars_path(market))})
    return out


def _summary_from_parquet(path: Path) -> tuple[int, str | None, str | None]:
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(path, columns=["timestamp"]).column("timestamp").to_pandas()
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(f"{path}: cannot read the bar file ({exc}); re-import or re-generate this market") from exc
    if len(column) == 0:
        return 0, None, None
    return len(column), column.iloc[0].isoformat(), column.iloc[-1].isoformat()
