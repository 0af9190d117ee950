"""Session hours, the America/New_York clock, per-session schedule columns and the gap report.

A session is one of the exchange calendar's sessions (:mod:`tradelab.marketdata.calendar`): regular hours on a cash
trading day, or a full Globex session from 18:00 ET the evening before. Bars are stamped with their open time, so a
09:30-16:00 session holds 390 one-minute bars, 09:30 to 15:59, and a session closing early at 13:15 holds 225.
Every stored bar carries its session's open and close (``session_open``, ``session_close``): the env, the features
and the flatten rule read the real close from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import ConfigError
from tradelab.marketdata.clock import hhmm_minutes
from tradelab.marketdata.parsing import ET

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.config.schema import ContractSpec

MAX_LISTED_GAPS = 20
"""How many gaps / short sessions the data report lists."""

SHORT_SESSION_FRACTION = 0.9
"""A session with fewer than this fraction of its scheduled bars (to its real close) is listed as short."""

SESSION_COLUMNS = ("session_open", "session_close")
"""Stored per-bar schedule columns: the bar's session open and close (tz-aware America/New_York)."""


def session_minutes(spec: "ContractSpec", market: str) -> tuple[int, int]:
    """``(start, end)`` minutes after midnight ET of the market's regular session.

    Raises:
        ConfigError: The regular session wraps past midnight (``--session eth`` is the way to import overnight
            trading).
    """
    start, end = hhmm_minutes(spec.session_start), hhmm_minutes(spec.session_end)
    if end <= start:
        raise ConfigError(
            f"config/markets.yaml: contracts.{market}.session_end={spec.session_end!r} is not after "
            f"session_start={spec.session_start!r}; regular hours cannot cross midnight (use e.g. 09:30-16:00, and "
            f"`data import --session eth` for the overnight Globex session)"
        )
    return start, end


def minute_of_day(ts_et: "pd.Series") -> np.ndarray:
    """Minutes since ET midnight of tz-aware ET times."""
    return (ts_et.dt.hour * 60 + ts_et.dt.minute).to_numpy(dtype=np.int64)


def utc_ns(ts: "pd.Series") -> np.ndarray:
    """Int64 nanoseconds since the epoch (UTC) of tz-aware times."""
    naive = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return naive.to_numpy(dtype="datetime64[ns]").view(np.int64)


def to_et(ts_utc: "pd.Series") -> "pd.Series":
    """Tz-aware UTC -> America/New_York, nanosecond unit (DST handled by the tz database)."""
    return ts_utc.dt.tz_convert(ET).astype(f"datetime64[ns, {ET}]")


def et_dates(ts_et: "pd.Series") -> "pd.Series":
    """ET calendar date of each time, as naive midnight ``datetime64``."""
    return ts_et.dt.tz_localize(None).dt.normalize()


def from_utc_ns(ns: np.ndarray) -> "pd.Series":
    """UTC nanoseconds -> tz-aware America/New_York series."""
    import pandas as pd

    return pd.Series(pd.DatetimeIndex(np.asarray(ns, dtype="datetime64[ns]")).tz_localize("UTC")).dt.tz_convert(
        ET).astype(f"datetime64[ns, {ET}]")


def session_ids_from_close(close_ns: np.ndarray) -> np.ndarray:
    """0-based session index of each bar from its session close (non-decreasing for sorted bars)."""
    _, codes = np.unique(np.asarray(close_ns, dtype=np.int64), return_inverse=True)
    return codes.astype(np.int32)


def gap_report(ts_et: "pd.Series", open_ns: np.ndarray, close_ns: np.ndarray) -> dict[str, Any]:
    """Missing minutes inside sessions and sessions much shorter than their schedule (to their real close).

    Args:
        ts_et: Bar open times (tz-aware ET), sorted.
        open_ns, close_ns: Each bar's session open and close (UTC ns).

    Returns:
        ``{sessions, count, missing_bars, gaps: [{after, before, missing_bars}], short_sessions: [{date, bars,
        scheduled_bars}]}``; a gap is two consecutive bars of one session more than a minute apart.
    """
    ns = utc_ns(ts_et)
    sid = session_ids_from_close(close_ns)
    step = np.diff(ns) // 60_000_000_000
    idx = np.flatnonzero((step > 1) & (sid[1:] == sid[:-1]))
    counts = np.bincount(sid) if sid.size else np.zeros(0, dtype=np.int64)
    first_of = np.searchsorted(sid, np.arange(counts.size))
    scheduled = ((np.asarray(close_ns)[first_of] - np.asarray(open_ns)[first_of]) // 60_000_000_000
                 if counts.size else np.zeros(0, dtype=np.int64))
    short = np.flatnonzero(counts < SHORT_SESSION_FRACTION * scheduled)
    return {
        "sessions": int(counts.size),
        "count": int(idx.size),
        "missing_bars": int((step[idx] - 1).sum()),
        "gaps": [
            {"after": ts_et.iloc[i].isoformat(), "before": ts_et.iloc[i + 1].isoformat(),
             "missing_bars": int(step[i] - 1)}
            for i in idx[:MAX_LISTED_GAPS]
        ],
        "short_sessions": [
            {"date": _trade_date(int(np.asarray(close_ns)[first_of[s]])), "bars": int(counts[s]),
             "scheduled_bars": int(scheduled[s])}
            for s in short[:MAX_LISTED_GAPS]
        ],
    }


def _trade_date(close_ns: int) -> str:
    import pandas as pd

    return pd.Timestamp(close_ns, unit="ns", tz="UTC").tz_convert(ET).date().isoformat()
