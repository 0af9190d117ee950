"""Session hours, the America/New_York clock, and the gap report.

A session is one America/New_York calendar date's bars with ``session_start <= open time < session_end``. Bars are
stamped with their open time, so a 09:30-16:00 session holds 390 one-minute bars, 09:30 to 15:59.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.errors import ConfigError
from tradelab.marketdata.parsing import ET

if TYPE_CHECKING:
    import pandas as pd

    from tradelab.config.schema import ContractSpec

MAX_LISTED_GAPS = 20
"""How many gaps / short sessions the data report lists."""

SHORT_SESSION_FRACTION = 0.9
"""A session with fewer than this fraction of its scheduled bars is listed as short (e.g. an early close)."""


def hhmm_minutes(text: str) -> int:
    """``"09:30"`` -> 570."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def session_minutes(spec: "ContractSpec", market: str) -> tuple[int, int]:
    """``(start, end)`` minutes after midnight ET of the market's session.

    Raises:
        ConfigError: The session wraps past midnight, which this data layer does not model.
    """
    start, end = hhmm_minutes(spec.session_start), hhmm_minutes(spec.session_end)
    if end <= start:
        raise ConfigError(
            f"config/markets.yaml: contracts.{market}.session_end={spec.session_end!r} is not after "
            f"session_start={spec.session_start!r}; sessions crossing midnight are not supported, use e.g. 09:30-16:00"
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


def in_session(ts_et: "pd.Series", start_min: int, end_min: int) -> np.ndarray:
    """Mask of bars whose open time is inside ``[start_min, end_min)`` minutes ET."""
    minutes = minute_of_day(ts_et)
    return (minutes >= start_min) & (minutes < end_min)


def session_ids(ts_et: "pd.Series") -> np.ndarray:
    """0-based index of each bar's ET date among the dates present (non-decreasing for sorted input)."""
    import pandas as pd

    codes, _ = pd.factorize(et_dates(ts_et), sort=True)
    return codes.astype(np.int32)


def gap_report(ts_et: "pd.Series", start_min: int, end_min: int) -> dict[str, Any]:
    """Missing minutes inside sessions and sessions much shorter than scheduled.

    Returns:
        ``{sessions, count, missing_bars, gaps: [{after, before, missing_bars}], short_sessions: [{date, bars}]}``;
        a gap is two consecutive bars of one session more than a minute apart.
    """
    ns = utc_ns(ts_et)
    sid = session_ids(ts_et)
    step = np.diff(ns) // 60_000_000_000
    idx = np.flatnonzero((step > 1) & (sid[1:] == sid[:-1]))
    counts = np.bincount(sid) if sid.size else np.zeros(0, dtype=np.int64)
    short = np.flatnonzero(counts < SHORT_SESSION_FRACTION * (end_min - start_min))
    first_of = np.searchsorted(sid, short)
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
            {"date": ts_et.iloc[j].date().isoformat(), "bars": int(counts[s])}
            for s, j in list(zip(short, first_of))[:MAX_LISTED_GAPS]
        ],
    }
