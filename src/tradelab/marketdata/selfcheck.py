"""The import's self-check: does the file's volume profile sit where the exchange says the session opens and closes?

US equity index futures trade far more from the cash open (09:30 ET) to the cash close (16:00 ET) than around
them, so a one-minute volume profile jumps at 09:30 and drops at 16:00 ET (in a regular-hours-only file the jump is
from no bars at all). Read in the wrong zone the jump moves by whole hours; bar-end stamps read as bar starts move it
one minute late.

The check scores interpretations of the file's times: every candidate zone (for zone-less wall times) x both stamp
conventions. With ``L[m] = log(1 + v[m])``, where ``v[m]`` is the median over full regular sessions (the calendar's,
no early close) of the volume of the bar opening at ET minute ``m`` under that interpretation (0 where there is no
bar), the open step is ``min(L[09:30] - L[09:29], L[09:30] - L[16:00])`` and the close step
``min(L[15:59] - L[16:00], L[15:59] - L[09:29])``: regular-hours volume above the volume outside on both sides. The
score is ``max(0, open) + max(0, close)``. The import is
refused when another interpretation scores at least :data:`MIN_SIGNAL` and beats the one asked for by
:data:`MARGIN`; with no interpretation reaching :data:`MIN_SIGNAL` the check is inconclusive (recorded, not refused).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tradelab.marketdata.calendar import MINUTE_NS, exchange_sessions
from tradelab.marketdata.parsing import ET

if TYPE_CHECKING:
    import pandas as pd

CANDIDATE_ZONES: tuple[str, ...] = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "UTC", "Europe/London",
    "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney",
)
"""Zones tried for zone-less wall times (besides the one asked for)."""

MIN_SIGNAL = math.log(3.0)
"""Score an interpretation needs before the check trusts it (a 3x volume step at the open, or the same at the close
and open together)."""

MARGIN = math.log(3.0)
"""How much better another interpretation must score than the one asked for to refuse the import."""

OPEN_MINUTE, CLOSE_MINUTE = 9 * 60 + 30, 16 * 60
"""The cash market's open and close, minutes after midnight ET."""

_PROBES = (OPEN_MINUTE - 1, OPEN_MINUTE, CLOSE_MINUTE - 1, CLOSE_MINUTE)


@dataclass(frozen=True)
class Interpretation:
    """One reading of the file's times and how well it fits the exchange.

    Attributes:
        timezone: Zone of the wall times (``UTC`` for times with offsets).
        stamp: ``start`` or ``end``.
        open_jump: Log volume step into 09:30 ET.
        close_drop: Log volume step out of 15:59 ET.
        score: ``max(0, open_jump) + max(0, close_drop)``.
        sessions: Full regular sessions with bars around the open or close under this reading (the median's n).
    """

    timezone: str
    stamp: str
    open_jump: float
    close_drop: float
    score: float
    sessions: int = 0


@dataclass(frozen=True)
class SelfCheck:
    """The outcome, as recorded in ``data_report.json`` (``self_check``).

    Attributes:
        status: ``passed``, ``inconclusive``, ``refused`` or ``overridden`` (refused, and ``--force-timezone``).
        asked: The interpretation the import uses.
        best: The best-scoring interpretation.
        sessions: Full regular sessions the asked reading's profile was taken over.
        message: The refusal line (empty unless refused or overridden).
    """

    status: str
    asked: Interpretation
    best: Interpretation
    sessions: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"status": self.status, "asked": _rounded(asdict(self.asked)), "best": _rounded(asdict(self.best)),
                "sessions": self.sessions, "message": self.message, "min_signal": round(MIN_SIGNAL, 4),
                "margin": round(MARGIN, 4)}


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def volume_self_check(ts_utc: "pd.Series", volume: "pd.Series", *, naive: bool, timezone: str, stamp: str,
                      label: str, force: bool) -> SelfCheck:
    """Score the interpretations of the times and decide.

    Args:
        ts_utc: Bar times as the import placed them (tz-aware UTC, already start-stamped per ``stamp``).
        volume: Volume per row (rows of several contracts at one minute are summed).
        naive: The file wrote zone-less wall times, placed in ``timezone``.
        timezone: The zone asked for (``--timezone`` or the layout's).
        stamp: The stamp convention asked for.
        label: The file, for the message.
        force: ``--force-timezone``: a refusal is recorded as ``overridden`` instead.
    """
    zone = timezone if naive else "UTC"
    walls = _wall_minutes(ts_utc, zone)
    ok = ~np.isnan(volume.to_numpy(dtype=np.float64)) & (walls != np.iinfo(np.int64).min)
    minutes, inverse = np.unique(walls[ok], return_inverse=True)
    volumes = np.bincount(inverse, weights=volume.to_numpy(dtype=np.float64)[ok]) if minutes.size else np.zeros(0)
    dates = _full_session_dates(ts_utc)
    zones = [zone] + [z for z in CANDIDATE_ZONES if z != zone] if naive else [zone]
    shift_asked = 1 if stamp == "end" else 0
    table: list[Interpretation] = []
    for candidate in zones:
        for alt in ("start", "end"):
            shift = (1 if alt == "end" else 0) - shift_asked
            table.append(_interpret(candidate, alt, minutes, volumes, dates, shift))
    asked = table[0] if stamp == "start" else table[1]
    best = max(table, key=lambda t: t.score)
    if best.score < MIN_SIGNAL:
        return SelfCheck("inconclusive", asked, best, asked.sessions, "")
    if best is asked or asked.score >= best.score - MARGIN:
        return SelfCheck("passed", asked, best, asked.sessions, "")
    message = _refusal(label, asked, best, naive=naive)
    return SelfCheck("overridden" if force else "refused", asked, best, asked.sessions, message)


def _refusal(label: str, asked: Interpretation, best: Interpretation, *, naive: bool) -> str:
    flags = []
    if best.timezone != asked.timezone:
        flags.append(f"--timezone {best.timezone}")
    if best.stamp != asked.stamp:
        flags.append(f"--stamp {best.stamp}")
    zone_words = f"{asked.timezone} wall time" if naive else "the file's UTC offsets"
    likely = (f"{best.timezone} wall time" if best.timezone != asked.timezone else zone_words)
    return (
        f"{label}: the volume profile does not fit the exchange under {zone_words} with bar-{asked.stamp} stamps: "
        f"the regular-hours volume jump at 09:30 ET and drop at 16:00 ET line up when the times are read as "
        f"{likely} with bar-{best.stamp} stamps (fit {best.score:.1f} against {asked.score:.1f}); pass "
        f"{' '.join(flags)}, or --force-timezone to import the times as given. Nothing was written"
    )


def _wall_minutes(ts_utc: "pd.Series", zone: str) -> np.ndarray:
    """Whole minutes since the epoch of each time's wall clock in ``zone`` (NaT -> int64 min)."""
    local = ts_utc.dt.tz_convert(zone).dt.tz_localize(None)
    ns = local.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return np.where(local.isna().to_numpy(), np.iinfo(np.int64).min, ns // MINUTE_NS)


def _full_session_dates(ts_utc: "pd.Series") -> np.ndarray:
    """Trade dates of full regular sessions (no early close) within the file's span."""
    valid = ts_utc.dropna()
    if valid.empty:
        return np.zeros(0, dtype="datetime64[D]")
    first = (valid.min().tz_convert(ET) - _days(1)).date().isoformat()
    last = (valid.max().tz_convert(ET) + _days(1)).date().isoformat()
    table = exchange_sessions("rth", first, last)
    return table.dates[table.close_ns == table.regular_close_ns]


def _days(n: int) -> "pd.Timedelta":
    import pandas as pd

    return pd.Timedelta(days=n)


def _interpret(zone: str, stamp: str, minutes: np.ndarray, volumes: np.ndarray, dates: np.ndarray,
               shift: int) -> Interpretation:
    """Score one reading: probe the volume at 09:29, 09:30, 15:59 and 16:00 ET of every full session."""
    import pandas as pd

    if dates.size == 0 or minutes.size == 0:
        return Interpretation(zone, stamp, 0.0, 0.0, 0.0)
    day_ns = pd.DatetimeIndex(dates.astype("datetime64[ns]"))
    probes = np.empty((len(_PROBES), dates.size), dtype=np.float64)
    for row, minute in enumerate(_PROBES):
        wall = _wall_in(day_ns + pd.Timedelta(minutes=minute), zone) + shift
        at = np.clip(np.searchsorted(minutes, wall), 0, minutes.size - 1)
        hit = minutes[at] == wall
        probes[row] = np.where(hit, volumes[at], 0.0)
    start = _wall_in(day_ns + pd.Timedelta(hours=9), zone) + shift
    end = _wall_in(day_ns + pd.Timedelta(hours=16, minutes=30), zone) + shift
    present = np.searchsorted(minutes, end) > np.searchsorted(minutes, start)
    if not present.any():
        return Interpretation(zone, stamp, 0.0, 0.0, 0.0)
    before_open, at_open, before_close, at_close = np.log(np.median(probes[:, present], axis=1) + 1.0)
    # A step counts only as far as the regular-hours level also beats the other side's outside level: the daily
    # break's fall to no bars at 17:00 ET, read an hour early, is a drop out of the evening's quiet, not the close.
    open_jump = float(min(at_open - before_open, at_open - at_close))
    close_drop = float(min(before_close - at_close, before_close - before_open))
    return Interpretation(zone, stamp, open_jump, close_drop, max(0.0, open_jump) + max(0.0, close_drop),
                          int(present.sum()))


def _wall_in(et_walls: "pd.DatetimeIndex", zone: str) -> np.ndarray:
    """ET wall times -> the same instants' wall clock in ``zone``, as whole minutes since the epoch."""
    local = et_walls.tz_localize(ET).tz_convert(zone).tz_localize(None)
    return local.as_unit("ns").asi8 // MINUTE_NS
