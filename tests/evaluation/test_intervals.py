"""The report's interval rows on hand-built days and ledgers: the right method, the n behind it, n/a when too few."""

from __future__ import annotations

import numpy as np
import pytest

from tradelab.evaluation.intervals import agent_intervals, trials_from_history
from tradelab.evaluation.stats import wilson_ci


def _trades(pnl: list[float]) -> list[dict]:
    return [{"pnl_usd": p, "r_multiple": p / 100.0} for p in pnl]


def test_too_few_days_trades_and_seeds_are_na() -> None:
    out = agent_intervals({1: [10.0, -5.0], 2: [3.0]}, _trades([10.0, -5.0, 3.0]),
                          [{"net_pnl_usd": 5.0}, {"net_pnl_usd": 3.0}], starting_balance_usd=50_000, level=0.95,
                          n_trials=1, trial_sharpes=None)
    rows = out["rows"]
    assert (out["days"], out["trades"], out["seeds"]) == (3, 3, 2)
    assert rows["mean_daily_pnl_usd"]["ci"] is None and rows["mean_daily_pnl_usd"]["n"] == 3
    assert rows["net_pnl_usd_per_seed"]["ci"] is None and rows["net_pnl_usd_per_seed"]["unit"] == "seeds"
    assert rows["profit_factor"]["ci"] is None and rows["profit_factor"]["value"] == pytest.approx(13.0 / 5.0)
    assert rows["win_rate"]["ci"] == pytest.approx(list(wilson_ci(2, 3)))  # Wilson needs no minimum
    assert out["psr"] is None and out["dsr"] is None
    assert "parse_rate" not in rows


def test_enough_data_gives_intervals_that_respect_bounds() -> None:
    rng = np.random.default_rng(4)
    days = {s: rng.normal(50.0, 300.0, 20).tolist() for s in (1, 2, 3)}
    pnl = rng.normal(20.0, 150.0, 60).tolist()
    per_seed = [{"net_pnl_usd": float(np.sum(d)), "advice_count": 40, "parse_rate": 0.95, "directional_advice": 20,
                 "hit_rate": 0.55} for d in days.values()]
    out = agent_intervals(days, _trades(pnl), per_seed, starting_balance_usd=50_000, level=0.95, n_trials=4,
                          trial_sharpes=[0.5, 1.5, -0.2, 0.9])
    rows = out["rows"]
    pooled = np.concatenate([days[s] for s in (1, 2, 3)])
    low, high = rows["mean_daily_pnl_usd"]["ci"]
    assert low < pooled.mean() < high and rows["mean_daily_pnl_usd"]["n"] == 60
    assert rows["net_pnl_usd_per_seed"]["ci"] is not None and rows["net_pnl_usd_per_seed"]["n"] == 3
    assert rows["profit_factor"]["ci"][0] >= 0.0
    assert 0.0 <= rows["win_rate"]["ci"][0] <= rows["win_rate"]["ci"][1] <= 1.0
    assert rows["parse_rate"]["n"] == 120 and rows["parse_rate"]["value"] == pytest.approx(114 / 120)
    assert rows["hit_rate"]["n"] == 60 and rows["hit_rate"]["ci"] == pytest.approx(list(wilson_ci(33, 60)))
    assert 0.0 <= out["dsr"] <= out["psr"] <= 1.0


def test_trials_count_distinct_trained_configurations() -> None:
    history = [
        {"config_hash": "a", "adapter": "stage1", "agents": {"hybrid": {"sharpe": 1.0}, "ppo": {"sharpe": 0.2},
                                                             "flat": {"sharpe": None}}},
        {"config_hash": "a", "adapter": "stage1", "agents": {"hybrid": {"sharpe": 1.4}}},  # re-run: same trial
        {"config_hash": "b", "adapter": "stage1", "agents": {"hybrid": {"sharpe": None}}},
    ]
    current = {"config_hash": "c", "adapter": "soft_grpo", "agents": {"hybrid": {"sharpe": -0.3},
                                                                      "random": {"sharpe": 2.0}}}
    n, sharpes = trials_from_history(history, current, ["hybrid", "ppo"])
    assert n == 4  # (a, hybrid), (a, ppo), (b, hybrid), (c, hybrid); baselines are not trials
    assert sorted(sharpes) == [-0.3, 0.2, 1.4]
    assert trials_from_history([], {"agents": {"flat": {"sharpe": None}}}, []) == (1, [])
