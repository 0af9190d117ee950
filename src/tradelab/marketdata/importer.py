"""``import_market``: read a user's bar file, place it on the exchange's clock and calendar, and store it.

Pipeline: open the file and find its layout by content (:mod:`tradelab.marketdata.formats`) -> read it, placing
zone-less wall times in ``--timezone`` -> convert bar-end stamps to bar starts (before anything else) -> convert to
America/New_York -> drop NaN rows -> keep the root's outright contracts -> sort, drop duplicate (symbol, time) rows
-> the volume self-check against the exchange's open and close (:mod:`tradelab.marketdata.selfcheck`) ->
volume-roll to one front-month series -> keep the bars inside the calendar's sessions (``--session rth|eth``,
:mod:`tradelab.marketdata.calendar`) -> value repairs (:mod:`tradelab.marketdata.validate`) -> write bars and
report. The source file is only read; the stored bars are replaced only after the whole pipeline succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from tradelab.errors import DataError
from tradelab.fileio import sha256_file
from tradelab.marketdata.budget import budget_report
from tradelab.marketdata.calendar import SessionTable, calendar_info, check_kind, exchange_sessions
from tradelab.marketdata.contracts import select_outrights, volume_roll
from tradelab.marketdata.formats import CONTAINERS, DEFAULT_TIMEZONE, FORMAT_NAMES, open_bars
from tradelab.marketdata.parsing import ET
from tradelab.marketdata.selfcheck import volume_self_check
from tradelab.marketdata.sessions import et_dates, from_utc_ns, gap_report, hhmm_minutes, minute_of_day, to_et, utc_ns
from tradelab.marketdata.store import write_market
from tradelab.marketdata.validate import drop_nan_rows, repair_bars, sort_and_dedupe
from tradelab.markets import contract_spec, validate_market_name

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.config.schema import ContractSpec, TradelabConfig
    from tradelab.marketdata.textbars import BarFormat

SUPPORTED = f"layouts {', '.join(FORMAT_NAMES)} in {CONTAINERS}"
"""What ``data import`` accepts, for messages."""

STAMPS = ("start", "end")
"""Bar stamp conventions: the bar's open time or its close time."""


@dataclass(frozen=True)
class ImportOptions:
    """How to read the file (the ``data import`` flags).

    Attributes:
        format: ``--format`` (None: detect from the content).
        timezone: ``--timezone`` for zone-less wall times (None: the layout's documented zone, else New York).
        stamp: ``--stamp`` (None: the layout's documented convention).
        session: ``--session``: ``rth`` (regular hours) or ``eth`` (the full Globex session).
        force_timezone: ``--force-timezone``: import even when the volume self-check disagrees.
    """

    format: str | None = None
    timezone: str | None = None
    stamp: str | None = None
    session: str = "rth"
    force_timezone: bool = False


def import_market(root: str | Path, path: str | Path, market: str, config: "TradelabConfig",
                  options: ImportOptions | None = None) -> dict[str, Any]:
    """Import a bar file in any known layout as ``market``'s bars.

    Args:
        root: Workspace root.
        path: The user's file (never modified).
        market: Market name; its contract spec gives the root symbol and regular hours.
        config: Loaded configuration.
        options: The import flags (defaults: detect everything, regular hours).

    Returns:
        The data report as written to ``data/<MKT>/data_report.json``.

    Raises:
        DataError: The file is missing, unreadable, of no known layout, fails the self-check, has a bad column or
            value, or leaves no session bars.
        ConfigError: The market has no contract spec, or the session kind is unknown.
    """
    from tradelab.config import config_hash
    from tradelab.provenance import origin

    opts = options or ImportOptions()
    validate_market_name(market)
    spec = contract_spec(config, market)
    kind = check_kind(opts.session)
    src = Path(path).expanduser().resolve()
    if not src.is_file():
        raise DataError(f"{src}: no such file; pass a bar file ({SUPPORTED})")
    layout, source, detected = open_bars(src, opts.format)
    zone = _zone(opts.timezone or layout.timezone or DEFAULT_TIMEZONE)
    stamp = _stamp(opts.stamp or layout.stamp)
    frame, info = layout.read(source, zone)
    rows_read = len(frame)
    naive, dst_dropped = bool(info.pop("naive_times")), int(info.pop("dst_dropped"))
    if stamp == "end":
        frame = frame.assign(ts=frame["ts"] - np.timedelta64(1, "m"))
    frame = frame.assign(ts=to_et(frame["ts"]))
    frame, repairs = drop_nan_rows(frame)
    frame, symbol_info = select_outrights(frame, spec.root_symbol, str(src), strict=layout.name == "databento")
    frame, order_repairs, duplicates = sort_and_dedupe(frame)
    check = volume_self_check(frame["ts"], frame["volume"], naive=naive, timezone=zone, stamp=stamp,
                              label=source.label, force=opts.force_timezone)
    if check.status == "refused":
        raise DataError(check.message)
    frame, rolls, days_without_front = volume_roll(frame, et_dates(frame["ts"]), spec.root_symbol)
    bars, placed = _place(frame, src, spec, kind, market)
    source_report = {
        "kind": _kind(layout, source.is_parquet), "format": layout.name, "format_label": layout.label,
        "detected": detected, "container": source.container, "path": str(src), "sha256": sha256_file(src),
        "bytes": src.stat().st_size, **info,
    }
    report = {
        "source": source_report,
        "rows_read": rows_read,
        "timezone": _zone_report(zone, naive, opts, layout),
        "stamp": {"convention": stamp, "from": "--stamp" if opts.stamp else f"{layout.label} default",
                  "shifted_minutes": -1 if stamp == "end" else 0},
        "self_check": check.to_dict(),
        **placed["sections"],
        "rolls": rolls,
        "repairs": repairs + order_repairs + placed["repairs"],
        "dropped": {
            "spread_rows": symbol_info["dropped_spread_rows"],
            "other_symbol_rows": symbol_info["dropped_other_symbol_rows"],
            "symbols": symbol_info["dropped_symbols"],
            "duplicate_rows": duplicates,
            **placed["dropped"],
            "days_without_front": days_without_front,
            "dst_local_time_rows": dst_dropped,
        },
        "contracts": symbol_info["contracts"],
        "budget": budget_report(market, utc_ns(bars["session_close"]), config),
        "origin": origin(config_hash(config), None, profile=config.profile),
    }
    return write_market(root, market, bars, report)


def _kind(layout: "BarFormat", parquet: bool) -> str:
    """The report's ``source.kind``: the layout name, ``csv``/``parquet`` for the generic layout."""
    if layout.name != "generic":
        return layout.name
    return "parquet" if parquet else "csv"


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(f"--timezone {name!r}: not an IANA time zone; pass e.g. America/New_York or "
                        f"America/Chicago") from None
    return name


def _stamp(value: str) -> str:
    if value not in STAMPS:
        raise DataError(f"--stamp {value!r}: use 'start' (bars labelled with their open time) or 'end' (with their "
                        f"close time)")
    return value


def _zone_report(zone: str, naive: bool, opts: ImportOptions, layout: "BarFormat") -> dict[str, Any]:
    if not naive:
        return {"name": "UTC", "from": "offsets written in the file", "naive_times": False,
                "ignored_flag": opts.timezone}
    if opts.timezone:
        origin_ = "--timezone"
    elif layout.timezone:
        origin_ = f"{layout.label} documents {layout.timezone}"
    else:
        origin_ = f"assumed: {layout.label} files do not say their zone"
    return {"name": zone, "from": origin_, "naive_times": True, "forced": opts.force_timezone}


def _place(frame: "pd.DataFrame", src: Path, spec: "ContractSpec", kind: str, market: str
           ) -> tuple["pd.DataFrame", dict[str, Any]]:
    """Keep the bars inside the calendar's sessions, repair values, and build the stored bars and report parts."""
    hours = _hours_text(spec, kind)
    _require_rows(frame, src, hours, "after reading")
    ns = utc_ns(frame["ts"])
    dates = et_dates(frame["ts"])
    first = (dates.min() - np.timedelta64(1, "D")).date().isoformat()
    last = (dates.max() + np.timedelta64(2, "D")).date().isoformat()
    table = exchange_sessions(kind, first, last, rth_start=spec.session_start, rth_end=spec.session_end)
    index = table.locate(ns)
    inside = index >= 0
    regular = (hhmm_minutes(spec.session_start), hhmm_minutes(spec.session_end)) if kind == "rth" else None
    holidays = _holidays(frame, ~inside, table, regular)
    frame = frame[inside].assign(session=index[inside])
    _require_rows(frame, src, hours, "inside the session")
    frame, value_repairs = repair_bars(frame)
    _require_rows(frame, src, hours, "after dropping invalid rows")
    _require_one_minute(frame, src)
    bars = _to_bars(frame, table, market)
    used = np.unique(frame["session"].to_numpy())
    sections = {
        "session": {"kind": kind, "start": spec.session_start if kind == "rth" else "18:00 (previous day)",
                    "end": spec.session_end if kind == "rth" else "17:00", "timezone": ET,
                    "calendar": calendar_info(kind)},
        "calendar": {
            "sessions": int(used.size),
            "early_closes": _early(table, used),
            "holidays_dropped": holidays,
        },
        "gaps": gap_report(bars["timestamp"], utc_ns(bars["session_open"]), utc_ns(bars["session_close"])),
    }
    dropped = {"outside_session_rows": int((~inside).sum()) - sum(h["rows"] for h in holidays),
               "holiday_rows": sum(h["rows"] for h in holidays)}
    return bars, {"sections": sections, "repairs": value_repairs, "dropped": dropped}


def _early(table: SessionTable, used: np.ndarray) -> list[dict[str, str]]:
    closes = {e["date"]: e for e in table.early_closes()}
    return [closes[str(table.dates[i])] for i in used if str(table.dates[i]) in closes]


def _holidays(frame: "pd.DataFrame", outside: np.ndarray, table: SessionTable,
              regular: tuple[int, int] | None) -> list[dict[str, Any]]:
    """Weekdays the calendar has no session for, with the rows dropped there (inside ``regular`` hours for RTH)."""
    if not outside.any():
        return []
    dates = et_dates(frame["ts"]).to_numpy().astype("datetime64[D]")
    counted = outside.copy()
    if regular is not None:
        minutes = minute_of_day(frame["ts"])
        counted &= (minutes >= regular[0]) & (minutes < regular[1])
    trade_dates = set(table.dates.tolist())
    out = []
    for day, count in zip(*np.unique(dates[counted], return_counts=True)):
        day = day.item()
        if day.weekday() < 5 and day not in trade_dates:
            out.append({"date": day.isoformat(), "rows": int(count)})
    return out


def _hours_text(spec: "ContractSpec", kind: str) -> str:
    if kind == "eth":
        return "the Globex session, 18:00-17:00 America/New_York"
    return f"{spec.session_start}-{spec.session_end} America/New_York on the exchange's trading days"


def _require_rows(frame: "pd.DataFrame", src: Path, hours: str, stage: str) -> None:
    if frame.empty:
        raise DataError(
            f"{src}: no bars left {stage} ({hours}); check the file covers those hours, --timezone and --stamp, "
            f"--session, and session_start/session_end in config/markets.yaml"
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


def _to_bars(frame: "pd.DataFrame", table: SessionTable, market: str) -> "pd.DataFrame":
    import pandas as pd

    session = frame["session"].to_numpy()
    bars = pd.DataFrame({"timestamp": frame["ts"].reset_index(drop=True)})
    for column in ("open", "high", "low", "close", "volume"):
        bars[column] = frame[column].to_numpy(dtype=np.float64)
    bars["symbol"] = frame["symbol"].where(frame["symbol"] != "", market).astype("str").reset_index(drop=True)
    bars["session_open"] = from_utc_ns(table.open_ns[session])
    bars["session_close"] = from_utc_ns(table.close_ns[session])
    return bars



def import_summary(report: dict[str, Any]) -> dict[str, str]:
    """The lines ``data import`` prints: layout, clock, calendar, self-check and what was kept."""
    import math

    source, zone, stamp = report["source"], report["timezone"], report["stamp"]
    session, calendar, check = report["session"], report["calendar"], report["self_check"]
    cal = session["calendar"]
    asked = check["asked"]
    shift = " (converted to bar starts: -1 minute)" if stamp["shifted_minutes"] else ""
    closes = ", ".join(f"{e['date']} {e['close'][11:16]}" for e in calendar["early_closes"]) or "none"
    holidays = ", ".join(f"{h['date']} ({h['rows']} rows)" for h in calendar["holidays_dropped"]) or "none"
    cash = f" + {cal['cash_calendar']} holidays" if cal["cash_calendar"] else ""
    return {
        "file": source["path"],
        "format": f"{source['format']} ({source['format_label']}, "
                  f"{'detected from the content' if source['detected'] else 'from --format'})",
        "time zone": f"{zone['name']} ({zone['from']})",
        "stamps": f"bar {stamp['convention']} ({stamp['from']}){shift}",
        "session": f"{session['kind']} {session['start']}-{session['end']} ET",
        "calendar": f"{cal['futures_calendar']}{cash} ({cal['library']} {cal['version']})",
        "self-check": (f"{check['status']}: volume x{math.exp(asked['open_jump']):.1f} into 09:30 ET, "
                       f"x{math.exp(asked['close_drop']):.1f} out of 15:59 ET over {check['sessions']} full "
                       f"sessions" + (f"; {check['message']}" if check["message"] else "")),
        "rows": f"{report['rows']:,} kept of {report['rows_read']:,} read",
        "sessions": str(calendar["sessions"]),
        "range": f"{report['start']} to {report['end']}",
        "early closes": closes,
        "holidays dropped": holidays,
        "gaps": f"{report['gaps']['count']} gaps, {report['gaps']['missing_bars']} missing bars, "
                f"{len(report['gaps']['short_sessions'])} short sessions",
        "rolls": str(len(report["rolls"])),
        "repairs": ", ".join(f"{r['kind']} {r['count']}" for r in report["repairs"]) or "none",
        "stage 1": report["budget"]["stage1"],
        "stage 2": report["budget"]["stage2"],
        "evaluate": report["budget"]["evaluate"],
        "walk-forward": report["budget"]["walk_forward"],
        "bars": report["bars_path"],
    }
