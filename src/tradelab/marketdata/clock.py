"""Per-bar clock values read from each session's real open and close (numpy only).

The rules in ``config/env.yaml`` name ET clock times for the regular session (``flatten_time: 15:55``,
``entry_cutoff: 15:30``, with ``session_end: 16:00`` in ``config/markets.yaml``). What they mean is a distance
from the close: flatten 5 minutes before it, no entries in the last 30. Applied to each session's *real* close
(the calendar's early closes and holiday halts, or the Globex 17:00 ET close with ``--session eth``), a session
that closes at 13:15 flattens at 13:10 and stops entries at 12:45, and a regular one is unchanged.
"""

from __future__ import annotations

import numpy as np

MINUTE_NS = 60_000_000_000
"""One minute in nanoseconds."""

BAR_NS = MINUTE_NS
"""Bar length: a bar opening at ``t`` closes at ``t + BAR_NS``."""


def hhmm_minutes(text: str) -> int:
    """``"15:55"`` -> 955."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def minutes_before_close(rule_time: str, regular_close: str) -> int:
    """How many minutes before the regular close ``rule_time`` is (``15:55`` before ``16:00`` -> 5; never < 0)."""
    return max(0, hhmm_minutes(regular_close) - hhmm_minutes(rule_time))


def rule_point_ns(session_close_ns: np.ndarray, minutes_before: int) -> np.ndarray:
    """Each bar's rule time: its session's real close less ``minutes_before`` minutes (UTC ns)."""
    return np.asarray(session_close_ns, dtype=np.int64) - np.int64(minutes_before) * MINUTE_NS


def bar_close_ns(timestamps_ns: np.ndarray) -> np.ndarray:
    """Each bar's close time (its open plus one bar)."""
    return np.asarray(timestamps_ns, dtype=np.int64) + BAR_NS


def minutes_until(point_ns: np.ndarray, timestamps_ns: np.ndarray) -> np.ndarray:
    """Whole minutes from each bar's close to ``point_ns`` (0 at or after it)."""
    return np.maximum((np.asarray(point_ns, dtype=np.int64) - bar_close_ns(timestamps_ns)) // MINUTE_NS, 0)


def session_position(timestamps_ns: np.ndarray, open_ns: np.ndarray, close_ns: np.ndarray) -> np.ndarray:
    """Fraction of the session elapsed at each bar's open: ``(t - open) / (close - open)`` (float64).

    With a 09:30-16:00 session this is ``(minute - 570) / 390``, exactly as the fixed-hours formula gave.
    """
    length = np.maximum(np.asarray(close_ns, dtype=np.int64) - np.asarray(open_ns, dtype=np.int64), 1)
    return (np.asarray(timestamps_ns, dtype=np.int64) - np.asarray(open_ns, dtype=np.int64)) / length


def past_point(timestamps_ns: np.ndarray, point_ns: np.ndarray) -> np.ndarray:
    """Bars opening after ``point_ns`` (a position still held there has missed the flatten)."""
    return np.asarray(timestamps_ns, dtype=np.int64) > np.asarray(point_ns, dtype=np.int64)
