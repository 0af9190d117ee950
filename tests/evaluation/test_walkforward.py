"""Purged, embargoed walk-forward folds on a hand-built timeline."""

from __future__ import annotations

import numpy as np
import pytest

from tradelab.errors import DataError
from tradelab.evaluation.starts import Window
from tradelab.evaluation.walkforward import purged_train_indices, walk_forward_folds


def test_folds_on_a_hand_built_timeline() -> None:
    # 100 bars, holdout from bar 40, labels look 5 bars ahead, embargo 3 bars, 2 folds.
    # Skipped in front of the first fold: 5 + 3 -> tests tile [48, 100): [48, 74) and [74, 100).
    # Fold 0: a bar t is purged when t + 5 >= 48 (43..47), then 40..42 are embargoed: train on 0..39.
    # Fold 1: purged 69..73, embargoed 66..68: train on 0..65.
    folds, skipped = walk_forward_folds(100, 40, 2, purge_bars=5, embargo_bars=3)
    assert skipped == 8
    assert [(f.test.start_index, f.test.end_index) for f in folds] == [(48, 74), (74, 100)]
    assert [(f.train_start, f.train_end, f.purged_bars, f.embargoed_bars) for f in folds] == [
        (0, 40, 5, 3), (0, 66, 5, 3)]
    assert folds[1].to_dict() == {"fold": 1, "test_start": 74, "test_end": 100, "train_start": 0, "train_end": 66,
                                  "train_bars": 66, "purged_bars": 5, "embargoed_bars": 3}


def test_no_kept_training_label_reaches_the_test_fold() -> None:
    test = Window(0, 60, 80)
    train, purged, embargoed = purged_train_indices(80, test, purge_bars=7, embargo_bars=4)
    assert (purged, embargoed) == (7, 4)
    # Brute force: every bar before the test whose window [t, t + 7] misses it, minus the 4 embargoed before them.
    clean = [t for t in range(60) if t + 7 < 60]
    assert train.tolist() == clean[:-4]
    assert np.all(train + 7 < test.start_index - 4 + 1)


def test_zero_purge_and_embargo_keep_every_earlier_bar() -> None:
    train, purged, embargoed = purged_train_indices(30, Window(0, 20, 30), purge_bars=0, embargo_bars=0)
    assert train.tolist() == list(range(20)) and purged == embargoed == 0


def test_a_holdout_too_short_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="walk-forward.*fewer than 3 folds x 10 bars"):
        walk_forward_folds(100, 70, 3, purge_bars=5, embargo_bars=5, min_test_bars=10)
