"""The stored market: ``data/<MKT>/bars_1m.parquet`` plus ``data_report.json``; listing and loading.

Stored bars have columns ``timestamp`` (tz-aware America/New_York, bar open time, nanoseconds), ``open``, ``high``,
``low``, ``close``, ``volume`` (float64), ``symbol`` (the contract traded), and the bar's session's ``session_open``
and ``session_close`` (tz-aware America/New_York, from the exchange calendar: a session's real close, early closes
included). Bar files written before the session columns existed still load (their sessions are the contract's fixed
regular hours). Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradelab.errors import DataError, StageNotReady, WorkspaceError
from tradelab.fileio import atomic_write_bytes, atomic_write_json
from tradelab.marketdata.parsing import ET
from tradelab.paths import Workspace
from tradelab.provenance import SCHEMA_VERSION, utc_now

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

BAR_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume", "symbol")
"""Columns every ``bars_1m.parquet`` has, in order."""

SESSION_COLUMNS = ("session_open", "session_close")
"""The schedule columns written after :data:`BAR_COLUMNS` (absent from files of earlier versions)."""


def not_ready(root: str | Path, market: str) -> StageNotReady:
    """The error for a market without bars, naming both ways to create them."""
    path = Workspace.at(root).bars_path(market)
    return StageNotReady(
        f"no market data for {market} ({path} does not exist): run `python main.py data generate --market {market}` "
        f"for the synthetic default, or `python main.py data import PATH --market {market}` for your own bars"
    )


def refuse_replacing_used_bars(root: str | Path, market: str, *, force: bool) -> None:
    """Stop ``data generate`` / ``data import`` from silently replacing bars a completed Stage 1 was trained on.

    Raises:
        WorkspaceError: The market's bars are the ones the manifest's completed Stage 1 recorded (same sha256) and
            ``force`` is false.
    """
    from tradelab.fileio import sha256_file
    from tradelab.manifest import data_of, load_manifest, stage1_of

    ws = Workspace.at(root)
    bars = ws.bars_path(market)
    if force or not bars.is_file():
        return
    manifest = load_manifest(root, market)
    stage1, data = stage1_of(manifest), data_of(manifest)
    completed = stage1 is not None and (stage1.status == "completed" or stage1.last_completed is not None)
    recorded = data.sha256 if data is not None else None
    if completed and recorded and recorded == sha256_file(bars):
        raise WorkspaceError(
            f"{bars}: a completed Stage 1 for {market} was trained on these bars; replacing them would leave its "
            f"model, experience and evaluations describing other data. Pass --force to replace them anyway, or use "
            f"another --root for the new data"
        )


def write_market(root: str | Path, market: str, bars: "pd.DataFrame", report: dict[str, Any]) -> dict[str, Any]:
    """Write the bars parquet and its report atomically; return the report as written.

    Args:
        root: Workspace root.
        market: Market name.
        bars: Frame with :data:`BAR_COLUMNS` and :data:`SESSION_COLUMNS` (times tz-aware ET), sorted, unique
            times.
        report: Report fields; ``market``, ``bars_path``, ``bars_sha256``, ``rows``, ``start``, ``end`` and
            ``created_at`` are filled in here.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ws = Workspace.at(root)
    frame = bars.loc[:, [*BAR_COLUMNS, *SESSION_COLUMNS]].reset_index(drop=True)
    for column in ("timestamp", *SESSION_COLUMNS):
        frame[column] = frame[column].astype(f"datetime64[ns, {ET}]")
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
    for column in ("timestamp", *(c for c in SESSION_COLUMNS if c in bars.columns)):
        bars[column] = bars[column].dt.tz_convert(ET).astype(f"datetime64[ns, {ET}]")
    return bars


def read_report(root: str | Path, market: str) -> dict[str, Any] | None:
    """The market's ``data_report.json``, or None when absent, unreadable or not shaped like a report (logged)."""
    path = Workspace.at(root).data_report_path(market)
    try:
        report = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable data report (%s); using the bar file itself", path, exc)
        return None
    if not isinstance(report, dict):
        log.warning("%s: a JSON %s, not a report object; using the bar file itself", path, type(report).__name__)
        return None
    return report


def _report_summary(report: dict[str, Any]) -> tuple[Any, Any, Any, str] | None:
    """``(rows, start, end, source kind)`` from a report whose fields have the right types, else None."""
    rows, start, end = report.get("rows"), report.get("start"), report.get("end")
    source = report.get("source")
    kind = source.get("kind") if isinstance(source, dict) else None
    if not (isinstance(rows, int) and not isinstance(rows, bool) and isinstance(start, str) and isinstance(end, str)):
        return None
    return rows, start, end, kind if isinstance(kind, str) else "unknown"


def market_origin(root: str | Path, market: str) -> dict[str, Any]:
    """Which market the bars are: ``{kind, generator_version, edge, seed, session}`` (imports: edge None).

    ``session`` is ``rth`` or ``eth`` (None when the report does not say). Every report carries this, so a figure
    can always be traced to the null market, a planted edge, or real data, and to the hours it covers.
    """
    report = read_report(root, market) or {}
    source = report.get("source")
    if not isinstance(source, dict):
        source = {}
    session = report.get("session")
    session_kind = session.get("kind") if isinstance(session, dict) else None
    session_kind = session_kind if session_kind in ("rth", "eth") else None
    kind = str(source.get("kind", "unknown"))
    edge = source.get("edge", 0.0)
    if kind != "synthetic" or isinstance(edge, bool) or not isinstance(edge, (int, float)):
        return {"kind": kind, "generator_version": None, "edge": None, "seed": None, "session": session_kind}
    return {"kind": kind, "generator_version": source.get("generator_version", 1),
            "edge": float(edge), "seed": source.get("seed"), "session": session_kind}


def list_markets(root: str | Path) -> list[dict[str, Any]]:
    """Every market with bars: ``[{market, rows, start, end, source, path}]``, sorted by market.

    A report with wrongly typed fields is ignored (the rows and range come from the bar file); folders under
    ``data/`` that are not market names are skipped (:meth:`tradelab.paths.Workspace.stray_data_dirs`).
    """
    ws = Workspace.at(root)
    out: list[dict[str, Any]] = []
    for market in ws.markets_with_data():
        report = read_report(root, market) or {}
        summary = _report_summary(report)
        if summary is None:
            if report:
                log.warning("%s: rows/start/end missing or wrongly typed; using the bar file itself",
                            ws.data_report_path(market))
            rows, start, end = _summary_from_parquet(ws.bars_path(market))
            source = "unknown"
        else:
            rows, start, end, source = summary
            edge = market_origin(root, market)["edge"]
            if source == "synthetic" and edge is not None:
                source = f"synthetic edge={edge:g}"
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
