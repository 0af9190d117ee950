"""The exchange's own calendar: which sessions exist, when each opens and when it really closes.

Source: ``pandas_market_calendars`` (PyPI ``pandas-market-calendars``), calendar ``"CME Globex Equity"`` for the
equity index futures (ES, NQ, YM, RTY) and ``"NYSE"`` for the cash market's holidays.

Why this library and not ``exchange_calendars``: both are maintained, and ``pandas_market_calendars`` builds on
``exchange_calendars`` (it installs it). Only ``pandas_market_calendars`` has the CME *Globex equity futures*
calendar with its real special closes: the Thanksgiving halt at 12:00 CT (13:00 ET), the 12:15 CT (13:15 ET) early
closes on the day after Thanksgiving, July 3 and Christmas Eve, the holiday halts on Martin Luther King Jr.,
Presidents' and Memorial Days, and the shortened Good Friday sessions. ``exchange_calendars``' ``CMES`` calendar
ends the day after Thanksgiving at 13:00 ET (the cash market's close, not the futures'), and its sessions are
fixed 18:00-17:00 ET days without the holiday halts' own rules.

Two session kinds (``--session``):
    * ``rth``: the regular trading hours of the contract spec (09:30-16:00 ET) on days the cash market (NYSE) is
      open and the futures trade; a session ends at the futures' real close when it is earlier (13:15 ET on the day
      after Thanksgiving). Cash-market holidays (Thanksgiving, MLK Day, ...) have no RTH session, even where Globex
      trades a halted half day.
    * ``eth``: the full Globex session, 18:00 ET the evening before to 17:00 ET (the daily break is 17:00-18:00),
      or the exchange's earlier close or holiday halt. A session is named by its trade date (the day it closes).

Schedules are computed once per (kind, hours, date range) and cached. Every time here is UTC nanoseconds (int64);
every date is a trade date (``datetime64[D]``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import ConfigError, MissingDependency
from tradelab.marketdata.parsing import ET

if TYPE_CHECKING:
    import pandas as pd

FUTURES_CALENDAR = "CME Globex Equity"
"""``pandas_market_calendars`` name of the CME Globex equity index futures calendar."""

CASH_CALENDAR = "NYSE"
"""Calendar whose holidays remove a regular-hours session."""

SESSION_KINDS = ("rth", "eth")
"""``rth``: regular trading hours; ``eth``: the full Globex session (electronic trading hours)."""

MINUTE_NS = 60_000_000_000
"""One minute in nanoseconds."""

ETH_CLOSE = "17:00"
"""The Globex equity session's regular close (ET); the daily break runs to 18:00."""


@dataclass(frozen=True)
class SessionTable:
    """The exchange's sessions over a date range, oldest first.

    Attributes:
        kind: ``"rth"`` or ``"eth"``.
        dates: Trade date of each session (``datetime64[D]``).
        open_ns: Session open, UTC nanoseconds.
        close_ns: Session close (the first minute no bar may open at), UTC nanoseconds.
        regular_close_ns: The close the session has on a normal day (16:00 ET for RTH, 17:00 ET for ETH); an earlier
            ``close_ns`` is an early close or holiday halt.
    """

    kind: str
    dates: np.ndarray
    open_ns: np.ndarray
    close_ns: np.ndarray
    regular_close_ns: np.ndarray

    def __len__(self) -> int:
        return int(self.dates.size)

    def locate(self, ts_ns: np.ndarray) -> np.ndarray:
        """Index of the session each bar opening at ``ts_ns`` belongs to, or -1 outside every session."""
        ts = np.asarray(ts_ns, dtype=np.int64)
        idx = np.searchsorted(self.open_ns, ts, side="right") - 1
        safe = np.clip(idx, 0, max(len(self) - 1, 0))
        inside = (idx >= 0) & (len(self) > 0)
        if len(self):
            inside &= ts < self.close_ns[safe]
        return np.where(inside, idx, -1)

    def early_closes(self) -> list[dict[str, str]]:
        """``[{date, close}]`` (close as ET ISO time) of the sessions ending before their regular close."""
        early = np.flatnonzero(self.close_ns < self.regular_close_ns)
        return [{"date": str(self.dates[i]), "close": et_iso(int(self.close_ns[i]))} for i in early]


def et_iso(ns: int) -> str:
    """UTC nanoseconds as an ISO time in New York."""
    import pandas as pd

    return pd.Timestamp(ns, unit="ns", tz="UTC").tz_convert(ET).isoformat()


def calendar_info(kind: str) -> dict[str, Any]:
    """What a data report records about the calendar: names, library and version, session kind."""
    import importlib.metadata as metadata

    return {
        "library": "pandas_market_calendars",
        "version": metadata.version("pandas_market_calendars"),
        "futures_calendar": FUTURES_CALENDAR,
        "cash_calendar": CASH_CALENDAR if kind == "rth" else None,
        "session": kind,
    }


def check_kind(kind: str) -> str:
    """``kind`` when it is a session kind, else a ConfigError naming the choices."""
    if kind not in SESSION_KINDS:
        raise ConfigError(f"--session {kind!r}: unknown session; use 'rth' (regular hours) or 'eth' (Globex)")
    return kind


def exchange_sessions(kind: str, first_date: str, last_date: str, *, rth_start: str = "09:30",
                      rth_end: str = "16:00") -> SessionTable:
    """The sessions whose trade date lies in ``[first_date, last_date]`` (ISO dates).

    Args:
        kind: ``"rth"`` or ``"eth"``.
        first_date, last_date: Trade-date range.
        rth_start, rth_end: Regular hours (ET, HH:MM) from the contract spec; ETH ignores them.
    """
    return _sessions(check_kind(kind), str(first_date)[:10], str(last_date)[:10], rth_start, rth_end)


def first_sessions(kind: str, start_date: str, count: int, *, rth_start: str = "09:30",
                   rth_end: str = "16:00") -> SessionTable:
    """The first ``count`` sessions on or after ``start_date`` (for the synthetic market)."""
    import pandas as pd

    span_days = int(count * 1.6) + 30  # ~252 sessions in 365 days: this always reaches ``count``
    while True:
        last = (pd.Timestamp(start_date) + pd.Timedelta(days=span_days)).date().isoformat()
        table = exchange_sessions(kind, start_date, last, rth_start=rth_start, rth_end=rth_end)
        if len(table) >= count:
            return SessionTable(table.kind, table.dates[:count], table.open_ns[:count], table.close_ns[:count],
                                table.regular_close_ns[:count])
        span_days *= 2


@lru_cache(maxsize=32)
def _sessions(kind: str, first: str, last: str, rth_start: str, rth_end: str) -> SessionTable:
    import pandas as pd

    futures = _schedule(FUTURES_CALENDAR, first, last)
    dates = futures.index.tz_localize(None).normalize() if futures.index.tz else futures.index.normalize()
    open_ns = _utc_ns(futures["market_open"])
    close_ns = _utc_ns(futures["market_close"])
    if kind == "eth":
        regular = _wall_ns(dates, ETH_CLOSE)
        return SessionTable(kind, dates.to_numpy().astype("datetime64[D]"), open_ns, close_ns, regular)
    cash_days = _valid_days(CASH_CALENDAR, first, last)
    keep = np.asarray(dates.isin(cash_days))
    dates = dates[keep]
    rth_open = _wall_ns(dates, rth_start)
    regular = _wall_ns(dates, rth_end)
    close = np.minimum(regular, close_ns[keep])
    live = close > rth_open
    return SessionTable(kind, dates[live].to_numpy().astype("datetime64[D]"), rth_open[live], close[live],
                        regular[live])


def _calendar(name: str) -> Any:
    try:
        import pandas_market_calendars as mcal
    except ImportError as exc:  # pragma: no cover - in requirements.txt
        raise MissingDependency(
            "the exchange calendar needs 'pandas_market_calendars'; run `pip install pandas_market_calendars`"
        ) from exc
    return mcal.get_calendar(name)


def _schedule(name: str, first: str, last: str) -> "pd.DataFrame":
    with warnings.catch_warnings():
        # The library's own pandas deprecation notices are not about the user's data.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _calendar(name).schedule(first, last)


def _valid_days(name: str, first: str, last: str) -> "pd.DatetimeIndex":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        days = _calendar(name).valid_days(first, last)
    return days.tz_localize(None).normalize() if days.tz is not None else days.normalize()


def _utc_ns(column: "pd.Series") -> np.ndarray:
    return column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


def _wall_ns(dates: "pd.DatetimeIndex", hhmm: str) -> np.ndarray:
    """UTC nanoseconds of ``hhmm`` New York wall time on each date."""
    import pandas as pd

    hours, minutes = (int(x) for x in hhmm.split(":"))
    walls = pd.DatetimeIndex(dates) + pd.Timedelta(hours=hours, minutes=minutes)
    local = walls.tz_localize(ET, ambiguous="raise", nonexistent="raise")
    return local.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8.copy()
