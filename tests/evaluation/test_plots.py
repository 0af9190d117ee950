"""Bar-resolution curves and the report's PNGs (written small, with real content)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tradelab.evaluation.plots import (
    bar_curves,
    plot_cost_sweep,
    plot_equity_drawdown_bars,
    plot_r_multiples,
    session_starts,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_episodes_join_into_one_cumulative_curve() -> None:
    paths = [([10, 11, 12], [100_000.0, 100_010.0, 100_005.0]), ([20, 21], [100_000.0, 99_990.0])]
    bars, curve = bar_curves(paths, 100_000.0)
    assert bars.tolist() == [10, 11, 12, 20, 21]
    assert curve.tolist() == pytest.approx([0.0, 10.0, 5.0, 5.0, -5.0])
    assert bar_curves([], 1.0)[1].size == 0


def test_session_starts_mark_every_new_session() -> None:
    session_id = np.repeat(np.arange(4), 10)
    bars = np.array([3, 4, 9, 10, 11, 25, 26])
    assert session_starts(bars, session_id).tolist() == [0, 3, 5]


def test_pngs_are_small_and_drawn(tmp_path: Path) -> None:
    session_id = np.repeat(np.arange(5), 50)
    rng = np.random.default_rng(0)
    paths = {name: [(list(range(s * 50, s * 50 + 40)), (100_000 + np.cumsum(rng.normal(0, 50, 40))).tolist())
                    for s in range(4)] for name in ("a", "b")}
    written = [
        plot_equity_drawdown_bars(paths, session_id, [f"2024-01-0{d + 1}" for d in range(5)], 100_000.0,
                                  tmp_path / "eq.png", "equity"),
        plot_r_multiples({"a": rng.normal(0, 1, 30).tolist(), "b": []}, tmp_path / "r.png", "R"),
        plot_cost_sweep({"agents": {"a": {"trades": 3, "break_even_multiple": 1.5, "rows": [
            {"multiple": m, "net_pnl_usd": 30.0 - 20.0 * m} for m in (0.0, 1.0, 2.0, 3.0)]}}},
            tmp_path / "cost.png", "cost"),
    ]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and 5_000 < len(data) < 200_000
