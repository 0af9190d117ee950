"""``import_market``: read a user's bar file, clean it, and store it as the market's bars.

Pipeline: read (Databento or generic) -> convert to America/New_York -> drop NaN rows -> keep the root's outright
contracts -> sort, drop duplicate (symbol, time) rows -> volume-roll to one front-month series -> keep the session
-> value repairs (:mod:`tradelab.marketdata.validate`) -> write bars and report. The source file is only read; the
stored bars are replaced only after the whole pipeline succeeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import DataError
from tradelab.fileio import sha256_file
from tradelab.marketdata.contracts import select_outrights, volume_roll
from tradelab.marketdata.databento import has_databento_columns, looks_like_databento, read_databento
from tradelab.marketdata.generic import read_generic
from tradelab.marketdata.sessions import et_dates, gap_report, in_session, session_minutes, to_et, utc_ns
from tradelab.marketdata.store import write_market
from tradelab.marketdata.validate import drop_nan_rows, repair_bars, sort_and_dedupe
from tradelab.markets import contract_spec, validate_market_name

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.config.schema import ContractSpec, TradelabConfig

SUPPORTED = ".zip (Databento), .csv (Databento or generic OHLCV), .csv.zst (Databento), .parquet (generic OHLCV)"
"""What ``data import`` accepts, for messages."""


def import_market(root: str | Path, path: str | Path, market: str, config: "TradelabConfig") -> dict[str, Any]:
    """Import a Databento OHLCV-1m export or a generic OHLCV file as ``market``'s bars.

    Args:
        root: Workspace root.
        path: The user's file (never modified).
        market: Market name; its contract spec gives the root symbol and session hours.
        config: Loaded configuration.

    Returns:
        The data report as written to ``data/<MKT>/data_report.json``.

    Raises:
        DataError: The file is missing, unreadable, has a bad column or value, or leaves no session bars.
        ConfigError: The market has no contract spec.
    """
    from tradelab.config import config_hash
    from tradelab.provenance import origin

    validate_market_name(market)
    spec = contract_spec(config, market)
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise DataError(f"{src}: no such file; pass a bar file: {SUPPORTED}")
    kind = detect_kind(src)
    frame, info = read_databento(src) if kind == "databento" else read_generic(src)
    dst_dropped = int(info.pop("dst_dropped", 0))
    source = {"kind": kind, "path": str(src), "sha256": sha256_file(src), "bytes": src.stat().st_size, **info}
    rows_read = len(frame)
    bars, details = _clean(frame, src, spec, market, strict=kind == "databento")
    details["dropped"]["dst_local_time_rows"] = dst_dropped
    report = {"source": source, "rows_read": rows_read, **details, "origin": origin(config_hash(config), None)}
    return write_market(root, market, bars, report)


def _clean(
    frame: "pd.DataFrame", src: Path, spec: "ContractSpec", market: str, *, strict: bool
) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Run the import pipeline on a read frame; return the stored-bar frame and the report sections."""
    start_min, end_min = session_minutes(spec, market)
    frame = frame.assign(ts=to_et(frame["ts"]))
    frame, repairs = drop_nan_rows(frame)
    frame, symbol_info = select_outrights(frame, spec.root_symbol, str(src), strict=strict)
    frame, order_repairs, duplicates = sort_and_dedupe(frame)
    frame, rolls, days_without_front = volume_roll(frame, et_dates(frame["ts"]), spec.root_symbol)
    inside = in_session(frame["ts"], start_min, end_min)
    frame = frame[inside]
    _require_rows(frame, src, spec.session_start, spec.session_end, "inside the session")
    frame, value_repairs = repair_bars(frame)
    _require_rows(frame, src, spec.session_start, spec.session_end, "after dropping invalid rows")
    _require_one_minute(frame, src)
    bars = _to_bars(frame, market)
    return bars, {
        "session": {"start": spec.session_start, "end": spec.session_end, "timezone": "America/New_York"},
        "gaps": gap_report(bars["timestamp"], start_min, end_min),
        "rolls": rolls,
        "repairs": repairs + order_repairs + value_repairs,
        "dropped": {
            "spread_rows": symbol_info["dropped_spread_rows"],
            "other_symbol_rows": symbol_info["dropped_other_symbol_rows"],
            "symbols": symbol_info["dropped_symbols"],
            "duplicate_rows": duplicates,
            "outside_session_rows": int((~inside).sum()),
            "days_without_front": days_without_front,
        },
        "contracts": symbol_info["contracts"],
    }


def detect_kind(path: Path) -> str:
    """``"databento"``, ``"csv"`` or ``"parquet"`` from the file name and, for CSV, its header."""
    name = path.name.lower()
    if looks_like_databento(path):
        return "databento"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv"):
        try:
            with open(path, encoding="utf-8-sig") as fh:
                header = fh.readline()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read the header ({exc}); save it as UTF-8 CSV with a header row") from exc
        return "databento" if has_databento_columns(header.split(",")) else "csv"
    raise DataError(f"{path}: unsupported file type {path.suffix!r}; supported: {SUPPORTED}")


def _require_rows(frame: "pd.DataFrame", src: Path, start: str, end: str, stage: str) -> None:
    if frame.empty:
        raise DataError(
            f"{src}: no bars left {stage} ({start}-{end} America/New_York); check the file covers regular trading "
            f"hours, the timestamp column's time zone, and session_start/session_end in config/markets.yaml"
        )


def _require_one_minute(frame: "pd.DataFrame", src: Path) -> None:
    """Reject files whose bars are not one minute apart (most steps inside a session must be 60 s)."""
    ns = utc_ns(frame["ts"])
    steps = np.diff(ns) // 1_000_000_000
    steps = steps[(steps > 0) & (steps < 6 * 3600)]
    if steps.size == 0:
        return
    values, counts = np.unique(steps, return_counts=True)
    modal = int(values[np.argmax(counts)])
    if modal != 60:
        raise DataError(
            f"{src}: bars are {modal} seconds apart (most common step), not 1 minute; resample to 1-minute OHLCV "
            f"bars before importing"
        )


def _to_bars(frame: "pd.DataFrame", market: str) -> "pd.DataFrame":
    import pandas as pd

    bars = pd.DataFrame({"timestamp": frame["ts"].reset_index(drop=True)})
    for column in ("open", "high", "low", "close", "volume"):
        bars[column] = frame[column].to_numpy(dtype=np.float64)
    bars["symbol"] = frame["symbol"].where(frame["symbol"] != "", market).astype("str").reset_index(drop=True)
    return bars
