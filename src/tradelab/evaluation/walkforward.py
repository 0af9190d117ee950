"""Purged, embargoed walk-forward folds over a bar timeline.

The holdout ``[holdout_start, n)`` is tiled by ``K`` consecutive test folds. Fold ``k`` may train on bars before
its test fold only, less two bands in front of it:

* **purge**: a training bar ``t`` is labelled by what happens over its forward window ``[t, t + purge_bars]`` (the
  episode its decision plays out in), so any ``t`` whose window reaches the test fold is dropped
  (``purgedcv.purge`` on half-open intervals, bar positions as the clock);
* **embargo**: the ``embargo_bars`` bars before the purged band are dropped as well, since serially correlated
  bars just before a test fold carry information about it even when their own windows stop short of it.

A policy trained once (Stage 1) cannot be refit per fold; its training bars end at ``holdout_start - 1``. So the
same rule is applied to it from the other side: the first ``purge_bars + embargo_bars`` holdout bars are not tested
(``skipped_bars``), and every fold's test bars are at least that far from any bar the policy trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradelab.errors import DataError
from tradelab.evaluation.starts import Window


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold.

    Attributes:
        test: The test window (``window`` is the fold number).
        train_end: One past the last bar a model refit for this fold may train on (train bars are
            ``[train_start, train_end)``; everything from ``train_end`` to ``test.start_index`` is purged or
            embargoed).
        train_start: First training bar.
        purged_bars: Training bars dropped because their forward window overlaps the test fold.
        embargoed_bars: Training bars dropped by the embargo in front of the purged band.
    """

    test: Window
    train_start: int
    train_end: int
    purged_bars: int
    embargoed_bars: int

    @property
    def train_bars(self) -> int:
        """Bars left to train on."""
        return max(0, self.train_end - self.train_start)

    def to_dict(self) -> dict[str, int]:
        """Plain-JSON form for the report."""
        return {"fold": self.test.window, "test_start": self.test.start_index, "test_end": self.test.end_index,
                "train_start": self.train_start, "train_end": self.train_end, "train_bars": self.train_bars,
                "purged_bars": self.purged_bars, "embargoed_bars": self.embargoed_bars}


def _bar_clock(n: int) -> np.ndarray:
    """Bar positions as a timedelta clock (purgedcv works on temporal dtypes); one bar = one minute."""
    return np.arange(n, dtype=np.int64).astype("timedelta64[m]")


def purged_train_indices(n_bars: int, test: Window, *, purge_bars: int, embargo_bars: int,
                         train_start: int = 0) -> tuple[np.ndarray, int, int]:
    """Training bars before ``test`` left after the purge and the embargo.

    Args:
        n_bars: Length of the timeline.
        test: Test window.
        purge_bars: Forward window of a bar's label, in bars (the label of ``t`` uses bars ``t..t+purge_bars``).
        embargo_bars: Extra bars dropped in front of the purged band.
        train_start: First bar that may be trained on.

    Returns:
        ``(train_indices, purged_count, embargoed_count)``.
    """
    from purgedcv import purge

    if purge_bars < 0 or embargo_bars < 0:
        raise ValueError(f"purge_bars and embargo_bars must be >= 0, got {purge_bars}, {embargo_bars}")
    clock = _bar_clock(n_bars)
    horizon_end = clock + np.timedelta64(purge_bars + 1, "m")  # half-open [t, t + purge_bars + 1)
    candidates = np.arange(train_start, test.start_index, dtype=np.int64)
    test_idx = np.arange(test.start_index, test.end_index, dtype=np.int64)
    kept = purge(candidates, test_idx, clock, horizon_end)
    purged = int(candidates.size - kept.size)
    if kept.size:
        # Everything the purge kept lies before the purged band (it drops a suffix); embargo the last bars of it.
        cut = int(kept.max()) + 1 - embargo_bars
        after = kept[kept < cut]
    else:
        after = kept
    return after, purged, int(kept.size - after.size)


def walk_forward_folds(n_bars: int, holdout_start: int, folds: int, *, purge_bars: int, embargo_bars: int,
                       min_test_bars: int = 1) -> tuple[list[Fold], int]:
    """``folds`` purged, embargoed walk-forward folds tiling the holdout after the skipped band.

    Args:
        n_bars: Bars in the timeline (the holdout runs to the end).
        holdout_start: First bar after the fixed policy's training bars.
        folds: Number of test folds (>= 1).
        purge_bars: Forward window of a label, in bars.
        embargo_bars: Embargo in bars.
        min_test_bars: Fewest bars a test fold may have (e.g. one evaluation episode).

    Returns:
        The folds (oldest first) and the number of holdout bars skipped in front of the first fold.

    Raises:
        DataError: The holdout is too short for the folds after the purge and embargo.
    """
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    skipped = purge_bars + embargo_bars
    first = holdout_start + skipped
    usable = n_bars - first
    if usable < folds * max(1, min_test_bars):
        raise DataError(
            f"walk-forward: holdout bars {holdout_start}..{n_bars - 1} leave {max(0, usable)} bars after a purge of "
            f"{purge_bars} and an embargo of {embargo_bars} bars, fewer than {folds} folds x {min_test_bars} bars; "
            "use fewer folds (--walk-forward K), lower evaluation.walk_forward_purge_bars / "
            "walk_forward_embargo_bars, or add data"
        )
    edges = np.linspace(first, n_bars, folds + 1).round().astype(np.int64)
    out: list[Fold] = []
    for k in range(folds):
        test = Window(k, int(edges[k]), int(edges[k + 1]))
        train, purged, embargoed = purged_train_indices(n_bars, test, purge_bars=purge_bars,
                                                        embargo_bars=embargo_bars)
        out.append(Fold(test=test, train_start=0, train_end=int(train.max()) + 1 if train.size else 0,
                        purged_bars=purged, embargoed_bars=embargoed))
    return out, skipped
