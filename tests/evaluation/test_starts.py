"""Episode starts and walk-forward windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tradelab.config import TradelabConfig
from tradelab.errors import DataError
from tradelab.evaluation.starts import Window, candidate_starts, choose_starts, walk_forward_windows

SESSIONS = np.repeat(np.arange(10, dtype=np.int32), 50)  # 10 sessions of 50 bars


def test_session_open_candidates_leave_room_for_an_episode() -> None:
    window = Window(0, 100, 500)
    opens = candidate_starts(SESSIONS, window, mode="session_open", min_bars=50)
    assert opens.tolist() == [100, 150, 200, 250, 300, 350, 400, 450]
    assert candidate_starts(SESSIONS, window, mode="session_open", min_bars=51).tolist()[-1] == 400
    bars = candidate_starts(SESSIONS, window, mode="random_bar", min_bars=50)
    assert bars[0] == 100 and bars[-1] == 450


def test_choose_starts_is_seeded_sorted_distinct_and_capped() -> None:
    window = Window(0, 100, 500)
    a = choose_starts(SESSIONS, window, episodes=4, seed=1, mode="random_bar", min_bars=50)
    assert a == sorted(a) and len(set(a)) == 4 and all(100 <= s <= 450 for s in a)
    assert a == choose_starts(SESSIONS, window, episodes=4, seed=1, mode="random_bar", min_bars=50)
    assert a != choose_starts(SESSIONS, window, episodes=4, seed=2, mode="random_bar", min_bars=50)
    assert len(choose_starts(SESSIONS, window, episodes=99, seed=1, mode="session_open", min_bars=50)) == 8
    with pytest.raises(DataError, match="episode start"):
        choose_starts(SESSIONS, Window(0, 100, 120), episodes=1, seed=1, mode="session_open", min_bars=50)


def test_walk_forward_windows_tile_the_holdout() -> None:
    windows = walk_forward_windows(Window(0, 100, 401), 3)
    assert [w.window for w in windows] == [0, 1, 2]
    assert windows[0].start_index == 100 and windows[-1].end_index == 401
    assert all(a.end_index == b.start_index for a, b in zip(windows, windows[1:]))


def test_manifest_timestamps_map_to_exact_bars(eval_root: Path, baseline_config: TradelabConfig) -> None:
    from tradelab.evaluation.holdout import bar_time, holdout_start_index, timestamp_ns
    from tradelab.marketdata import load_market_arrays

    arrays = load_market_arrays(eval_root, "NQ", baseline_config)
    for index in (1, 977, arrays.split_index, len(arrays) - 2):
        stamp = bar_time(arrays, index)
        assert timestamp_ns(stamp, field="f", path=eval_root) == int(arrays.timestamps_ns[index])
        manifest = {"data": {"holdout_start": stamp}}
        assert holdout_start_index(manifest, arrays, eval_root) == index
    utc = timestamp_ns("2024-02-05T14:30:00Z", field="f", path=eval_root)
    assert utc == timestamp_ns("2024-02-05T09:30:00-05:00", field="f", path=eval_root)
    assert utc == timestamp_ns("2024-02-05T09:30:00", field="f", path=eval_root)  # no offset: New York time
