"""Episode starts and walk-forward windows over the holdout, chosen once and shared by every agent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradelab.errors import DataError


@dataclass(frozen=True)
class Window:
    """A range of holdout bars ``[start_index, end_index)``.

    Attributes:
        window: Window number (0 for the whole holdout).
        start_index: First bar.
        end_index: One past the last bar.
    """

    window: int
    start_index: int
    end_index: int


def walk_forward_windows(holdout: Window, count: int) -> list[Window]:
    """Split the holdout into ``count`` consecutive windows of (nearly) equal bars, oldest first."""
    edges = np.linspace(holdout.start_index, holdout.end_index, count + 1).round().astype(np.int64)
    return [Window(k, int(edges[k]), int(edges[k + 1])) for k in range(count)]


def candidate_starts(session_id: np.ndarray, window: Window, *, mode: str, min_bars: int) -> np.ndarray:
    """Bars an episode may start at inside ``window`` with ``min_bars`` bars (itself included) before its end.

    Args:
        session_id: The market's session column.
        window: Bars to start in.
        mode: ``"session_open"`` (first bar of a session) or ``"random_bar"`` (any bar).
        min_bars: Bars an episode needs from its start on.
    """
    last = window.end_index - min_bars + 1
    bars = np.arange(window.start_index, max(last, window.start_index), dtype=np.int64)
    if mode == "random_bar":
        return bars
    if mode != "session_open":
        raise ValueError(f"unknown start mode {mode!r}")
    opens = bars[bars > 0]
    return opens[session_id[opens] != session_id[opens - 1]]


def choose_starts(
    session_id: np.ndarray, window: Window, *, episodes: int, seed: int, mode: str, min_bars: int
) -> list[int]:
    """Draw up to ``episodes`` distinct starts with a seeded generator, returned in chronological order.

    Fewer come back when the window has fewer candidates; the caller records how many ran.

    Raises:
        DataError: The window has no bar an episode can start at.
    """
    candidates = candidate_starts(session_id, window, mode=mode, min_bars=min_bars)
    if candidates.size == 0:
        raise DataError(
            f"holdout bars {window.start_index}..{window.end_index - 1} hold no {mode} episode start with "
            f"{min_bars} bars after it; generate or import more days, or lower evaluation.episode_bars"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(candidates, size=min(episodes, candidates.size), replace=False)
    return sorted(int(b) for b in chosen)
