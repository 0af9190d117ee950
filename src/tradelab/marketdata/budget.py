"""How many sessions each stage needs, and why: what a small workspace can and cannot do.

* **Stage 1** trains on the sessions before the holdout and leaves the latest ``env.holdout_fraction`` of the bars
  (moved to a session start) for evaluation: it needs two sessions at least, one to train on and one held out.
* **Stage 2** exports Stage 1's experience, which comes from the training sessions only; it needs no sessions of its
  own (its validation rows are the latest experience).
* **Evaluation** plays episodes of ``evaluation.episode_bars`` bars from holdout session opens: it needs one holdout
  session with room for an episode, and gets at most one episode per holdout session and seed. Its headline ratios
  need :data:`MIN_RATIO_DAYS` days over all seeds. ``--walk-forward K`` also skips a
  purge (a label's forward reach, ``walk_forward_purge_bars``) and an embargo (``walk_forward_embargo_bars``) before
  its K folds of at least one episode each: it needs ``purge + embargo + K x episode`` holdout bars, said in
  sessions.

Numpy only; the numbers come from the arrays and plain settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from tradelab.errors import DataError

if TYPE_CHECKING:
    from tradelab.config.schema import TradelabConfig
    from tradelab.marketdata.arrays import MarketArrays

MIN_RATIO_DAYS = 20
"""Fewest evaluated days behind a Sharpe, Sortino or Calmar shown as a number in a headline table (about a month of
sessions); with fewer the table prints ``n/a (n=...)``. A ratio over two or three days is noise: one good day makes
a Sharpe in the hundreds. (The evaluation imports it from here: the data layer sits below it.)"""


@dataclass(frozen=True)
class SessionBudget:
    """A market's sessions and how the holdout splits them.

    Attributes:
        market: Market name.
        total, train, holdout: Sessions in all, before the split, from the split on.
        holdout_fraction: ``env.holdout_fraction``.
        session_bars: Median bars per session.
        first, last: The first and last session's trade dates.
        fits: Holdout sessions whose open leaves at least the evaluation episode's bars before the data ends.
        holdout_bars: Bars from the split on.
    """

    market: str
    total: int
    train: int
    holdout: int
    holdout_fraction: float
    session_bars: int
    first: str
    last: str
    fits: int = 0
    holdout_bars: int = 0

    def head(self) -> str:
        """``NQ has 11 sessions (2023-11-20..2023-12-04)``."""
        return f"{self.market} has {self.total} session{'s' * (self.total != 1)} ({self.first}..{self.last})"

    def split_text(self) -> str:
        """``9 to train on and 2 held out (env.holdout_fraction 0.2)``."""
        return (f"{self.train} to train on and {self.holdout} held out (env.holdout_fraction "
                f"{self.holdout_fraction:g})")


def session_budget(market: str, session_id: np.ndarray, split_index: int, holdout_fraction: float,
                   session_dates: list[str], *, episode_bars: int = 0) -> SessionBudget:
    """Count the sessions on both sides of ``split_index``.

    Args:
        market: Market name.
        session_id: Session index per bar (non-decreasing).
        split_index: First holdout bar.
        holdout_fraction: ``env.holdout_fraction``.
        session_dates: Trade date of each session id.
        episode_bars: Evaluation episode length (for :attr:`SessionBudget.fits`).
    """
    sid = np.asarray(session_id, dtype=np.int64)
    counts = np.bincount(sid) if sid.size else np.zeros(0, dtype=np.int64)
    total = int(counts.size)
    train = int(sid[split_index - 1] + 1) if 0 < split_index <= sid.size else 0
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if sid.size else np.zeros(0, dtype=np.int64)
    holdout_starts = starts[starts >= split_index]
    fits = int(np.sum(sid.size - holdout_starts >= max(episode_bars, 1)))
    return SessionBudget(market, total, train, total - train, holdout_fraction,
                         int(np.median(counts)) if total else 0, session_dates[0] if session_dates else "-",
                         session_dates[-1] if session_dates else "-", fits, int(sid.size - split_index))


def stage1_refusal(budget: SessionBudget) -> str | None:
    """The one-line refusal when Stage 1 cannot run, else None."""
    if budget.train >= 1 and budget.holdout >= 1:
        return None
    return (f"{budget.head()}: Stage 1 needs at least 2, one or more to train on and one held out for evaluation "
            f"(env.holdout_fraction {budget.holdout_fraction:g}: the latest bars, moved to a session start); import "
            f"or generate more sessions")


def walk_forward_need(budget: SessionBudget, folds: int, episode_bars: int, purge_bars: int,
                      embargo_bars: int) -> tuple[int, int]:
    """``(holdout bars, holdout sessions)`` that ``folds`` walk-forward folds need after the purge and embargo."""
    bars = purge_bars + embargo_bars + folds * max(episode_bars, 1)
    return bars, math.ceil(bars / max(budget.session_bars, 1))


def evaluation_refusal(budget: SessionBudget, *, episode_bars: int, folds: int, purge_bars: int,
                       embargo_bars: int, session_starts: bool = True) -> str | None:
    """The one-line refusal when the evaluation cannot run as asked (``folds`` 0: no walk-forward), else None.

    ``session_starts``: episodes start at holdout session opens (``evaluation.start_mode: session_open``).
    """
    if session_starts and budget.fits < 1:
        return (f"{budget.head()}, {budget.split_text()}: evaluation needs one holdout session whose open leaves "
                f"{episode_bars} bars (evaluation.episode_bars) before the data ends, and none does; lower "
                f"evaluation.episode_bars, raise env.holdout_fraction before Stage 1, or import more sessions")
    if folds:
        bars, needed = walk_forward_need(budget, folds, episode_bars, purge_bars, embargo_bars)
        if budget.holdout_bars < bars:
            return (f"{budget.head()}, {budget.split_text()}: evaluate --walk-forward {folds} needs about {needed} "
                    f"holdout sessions ({bars} bars: a purge of {purge_bars} bars, how far a label looks ahead, an "
                    f"embargo of {embargo_bars} bars, then {folds} folds of at least one {episode_bars}-bar "
                    f"episode; sessions have {budget.session_bars} bars) and the holdout has {budget.holdout_bars} "
                    f"bars; use fewer folds, lower evaluation.walk_forward_purge_bars / walk_forward_embargo_bars, "
                    f"or import more sessions")
    return None


def require(refusal: str | None) -> None:
    """Raise the refusal as a DataError."""
    if refusal is not None:
        raise DataError(refusal)


def budget_lines(budget: SessionBudget, *, episodes: int, seeds: int, episode_bars: int, folds: int,
                 purge_bars: int, embargo_bars: int) -> dict[str, str]:
    """What each stage can do with these sessions, one line each."""
    stage1 = stage1_refusal(budget)
    lines = {"stage1": f"runs: {budget.split_text()}" if stage1 is None else f"refused: {stage1}"}
    lines["stage2"] = ("runs on Stage 1's experience (from the training sessions only)" if stage1 is None
                       else "needs Stage 1")
    plain = evaluation_refusal(budget, episode_bars=episode_bars, folds=0, purge_bars=0, embargo_bars=0)
    per_seed = min(episodes, budget.fits)
    days = per_seed * seeds
    ratios = ("headline ratios shown" if days >= MIN_RATIO_DAYS else
              f"headline ratios n/a ({days} < {MIN_RATIO_DAYS} days)")
    lines["evaluate"] = (f"runs: at most {per_seed} episode{'s' * (per_seed != 1)} of {episode_bars} bars per seed "
                         f"(one per holdout session), {days} days over {seeds} seeds; {ratios}"
                         if plain is None and stage1 is None else f"refused: {plain or 'needs Stage 1'}")
    bars, needed = walk_forward_need(budget, folds, episode_bars, purge_bars, embargo_bars)
    verdict = "runs" if budget.holdout_bars >= bars else "is refused"
    lines["walk_forward"] = (f"--walk-forward {folds} {verdict}: needs about {needed} holdout sessions ({folds} folds "
                             f"of {episode_bars} bars after a purge of {purge_bars} and an embargo of {embargo_bars} "
                             f"bars), has {budget.holdout}")
    return lines


def budget_of_arrays(arrays: "MarketArrays", holdout_fraction: float, *, episode_bars: int) -> SessionBudget:
    """:func:`session_budget` of loaded arrays at their ``split_index``."""
    sid = np.asarray(arrays.session_id, dtype=np.int64)
    return session_budget(arrays.market, sid, arrays.split_index, holdout_fraction,
                          _dates(np.asarray(arrays.session_close_ns, dtype=np.int64), sid),
                          episode_bars=episode_bars)


def _dates(close_ns: np.ndarray, sid: np.ndarray) -> list[str]:
    """Trade date (the session close's New York date) of each session id."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    if not sid.size:
        return []
    first = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    zone = ZoneInfo("America/New_York")
    return [datetime.fromtimestamp(int(close_ns[i]) / 1e9, tz=timezone.utc).astimezone(zone).date().isoformat()
            for i in first]


def budget_report(market: str, close_ns: np.ndarray, config: "TradelabConfig") -> dict[str, str]:
    """:func:`budget_lines` of freshly stored bars under the configuration's (full-run) settings."""
    from tradelab.marketdata.loader import holdout_split
    from tradelab.marketdata.sessions import session_ids_from_close

    sid = session_ids_from_close(close_ns)
    try:
        split = holdout_split(sid, config.env.holdout_fraction)
    except DataError:
        split = int(sid.size)  # one session: nothing can be held out (the Stage 1 line says so)
    ev = config.evaluation
    episode_bars = ev.episode_bars or config.env.episode_bars
    budget = session_budget(market, sid, split, config.env.holdout_fraction, _dates(close_ns, sid),
                            episode_bars=episode_bars)
    return budget_lines(budget, episodes=ev.episodes, seeds=ev.seeds, episode_bars=episode_bars,
                        folds=ev.walk_forward_windows, purge_bars=ev.walk_forward_purge_bars or config.env.episode_bars,
                        embargo_bars=ev.walk_forward_embargo_bars)
