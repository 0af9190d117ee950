"""The trading table's Sharpe, Sortino and Calmar: pooled over every seed's days, or ``n/a (n=...)`` below the
stated minimum; each seed's own ratios stay in the per-seed section."""

from __future__ import annotations

import numpy as np
import pytest

from tradelab.evaluation.intervals import agent_intervals
from tradelab.evaluation.metrics import MIN_RATIO_DAYS, portfolio_metrics, pooled_ratios
from tradelab.evaluation.report import HEADLINE_KEYS, agent_entry, markdown_table, per_seed_table, summary_table

BALANCE = 50_000.0


def _entry(daily_by_seed: dict[int, list[float]]) -> dict:
    per_seed = [(seed, portfolio_metrics(days, BALANCE) | {"trades": len(days)})
                for seed, days in daily_by_seed.items()]
    return agent_entry(per_seed, 0.95, pooled_ratios(daily_by_seed, BALANCE))


def test_a_few_days_show_no_ratio_in_the_headline() -> None:
    # The case: two seeds of two days each; one seed's Sharpe is in the hundreds, the money was lost.
    daily = {1000: [-300.0, -301.0], 1001: [10.0, 10.5]}
    entry = _entry(daily)
    assert entry["per_seed"][1]["sharpe"] > 100 and entry["net_pnl_usd"] < 0
    assert entry["sharpe"] is None and entry["sortino"] is None and entry["calmar"] is None
    assert entry["ratio_days"] == 4 and entry["seed_mean"]["sharpe"] is not None
    table = markdown_table({"random": entry}, HEADLINE_KEYS)
    assert table.count("n/a (n=4 days)") == 3
    assert summary_table({"random": entry})[0]["sharpe"] == "n/a (n=4 days)"  # the terminal and manifest table
    seeds = per_seed_table({"random": entry})
    assert f"{entry['per_seed'][1]['sharpe']:.4g}" in seeds or f"{entry['per_seed'][1]['sharpe']:,.2f}" in seeds


def test_enough_days_show_the_pooled_ratios_the_interval_section_has() -> None:
    rng = np.random.default_rng(3)
    daily = {seed: list(rng.normal(20.0, 300.0, 15)) for seed in (1000, 1001)}
    assert sum(len(d) for d in daily.values()) >= MIN_RATIO_DAYS
    entry = _entry(daily)
    pooled = portfolio_metrics([v for s in sorted(daily) for v in daily[s]], BALANCE)
    for key in ("sharpe", "sortino", "calmar"):
        assert entry[key] == pytest.approx(pooled[key])
    intervals = agent_intervals(daily, [], entry["per_seed"],
                                starting_balance_usd=BALANCE, level=0.95, n_trials=1, trial_sharpes=None)
    assert entry["sharpe"] == pytest.approx(intervals["rows"]["sharpe_pooled"]["value"])
    assert entry["sharpe"] != pytest.approx(entry["seed_mean"]["sharpe"])
    assert "n/a (n=" not in markdown_table({"ppo": entry}, HEADLINE_KEYS)


def test_a_fold_without_pooled_days_needs_the_minimum_on_every_seed() -> None:
    short = [(1, {"sharpe": 3.0, "days": 5}), (2, {"sharpe": 1.0, "days": 30})]
    assert agent_entry(short, 0.95)["sharpe"] is None
    long = [(1, {"sharpe": 3.0, "days": 25}), (2, {"sharpe": 1.0, "days": 30})]
    assert agent_entry(long, 0.95)["sharpe"] == pytest.approx(2.0)
