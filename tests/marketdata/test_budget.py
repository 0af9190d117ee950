"""Small workspaces say what they can do: Stage 1, Stage 2 and evaluation run, or refuse naming the sessions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tradelab.errors import DataError
from tradelab.evaluation.metrics import MIN_RATIO_DAYS
from tradelab.marketdata import generate_market, import_market, load_market_arrays
from tradelab.marketdata.budget import (
    budget_lines,
    budget_of_arrays,
    evaluation_refusal,
    session_budget,
    stage1_refusal,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bars"


def _budget(sessions: int, bars: int, split_session: int, *, episode_bars: int = 390):
    sid = np.repeat(np.arange(sessions), bars)
    dates = [f"2024-01-{d + 2:02d}" for d in range(sessions)]
    return session_budget("NQ", sid, split_session * bars, 0.2, dates, episode_bars=episode_bars)


def test_eleven_sessions_run_everything_but_a_three_fold_walk_forward() -> None:
    budget = _budget(11, 390, 9)
    assert (budget.total, budget.train, budget.holdout, budget.fits) == (11, 9, 2, 2)
    assert stage1_refusal(budget) is None
    assert evaluation_refusal(budget, episode_bars=390, folds=0, purge_bars=390, embargo_bars=390) is None
    refusal = evaluation_refusal(budget, episode_bars=390, folds=3, purge_bars=390, embargo_bars=390)
    assert refusal.startswith("NQ has 11 sessions (2024-01-02..2024-01-12), 9 to train on and 2 held out")
    assert "--walk-forward 3 needs about 5 holdout sessions" in refusal and "purge of 390" in refusal
    assert "embargo of 390" in refusal and "\n" not in refusal
    lines = budget_lines(budget, episodes=20, seeds=3, episode_bars=390, folds=3, purge_bars=390, embargo_bars=390)
    assert lines["stage1"] == "runs: 9 to train on and 2 held out (env.holdout_fraction 0.2)"
    assert lines["evaluate"].startswith("runs: at most 2 episodes of 390 bars per seed")
    assert f"n/a (6 < {MIN_RATIO_DAYS} days)" in lines["evaluate"] and "is refused" in lines["walk_forward"]


def test_one_session_refuses_stage1_and_a_short_holdout_refuses_evaluation() -> None:
    lone = _budget(1, 390, 1)
    refusal = stage1_refusal(lone)
    assert "Stage 1 needs at least 2" in refusal and "held out" in refusal
    short = _budget(3, 390, 2, episode_bars=400)  # the one holdout session is shorter than an episode
    assert "needs one holdout session whose open leaves 400 bars" in evaluation_refusal(
        short, episode_bars=400, folds=0, purge_bars=0, embargo_bars=0)


def test_the_import_report_and_the_arrays_agree(tmp_path: Path, config) -> None:
    report = import_market(tmp_path, FIXTURES / "canonical.csv", "NQ", config)
    assert report["budget"]["stage1"] == "runs: 3 to train on and 1 held out (env.holdout_fraction 0.2)"
    arrays = load_market_arrays(tmp_path, "NQ", config)
    budget = budget_of_arrays(arrays, 0.2, episode_bars=10)
    assert (budget.train, budget.holdout, budget.first, budget.last) == (3, 1, "2023-11-21", "2023-11-27")


def test_evaluation_refuses_folds_the_holdout_cannot_hold(tmp_path: Path, config) -> None:
    from tradelab.evaluation.backtest import resolve_settings
    from tradelab.evaluation.run import require_sessions

    generate_market(tmp_path, "NQ", config, days=10, seed=1)
    arrays = load_market_arrays(tmp_path, "NQ", config)
    ok = resolve_settings(config, episodes=None, seeds=None, adapter="none", walk_forward=False)
    require_sessions(arrays, config, ok)
    folds = resolve_settings(config, episodes=None, seeds=None, adapter="none", walk_forward=9)
    with pytest.raises(DataError, match=r"NQ has 10 sessions .* 8 to train on and 2 held out .*--walk-forward 9"):
        require_sessions(arrays, config, folds)
    tiny = dataclasses.replace(arrays, split_index=len(arrays) - 20)
    with pytest.raises(DataError, match="evaluation needs one holdout session"):
        require_sessions(tiny, config, ok)
