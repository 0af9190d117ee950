"""Across-seed mean and Student-t confidence interval."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from tradelab.evaluation.aggregate import aggregate_seeds, confidence_interval


def test_interval_is_the_student_t_interval_of_the_mean() -> None:
    values = [1.0, 2.0, 4.0, 7.0]
    mean, low, high = confidence_interval(values, 0.95)
    sd = math.sqrt(sum((v - 3.5) ** 2 for v in values) / 3)  # 2.6458
    half = stats.t.ppf(0.975, 3) * sd / math.sqrt(4)
    assert mean == pytest.approx(3.5)
    assert (low, high) == pytest.approx((3.5 - half, 3.5 + half))
    assert half == pytest.approx(4.2100, abs=1e-3)  # t(0.975, 3) = 3.1824


def test_interval_widens_with_level_and_collapses_for_one_value() -> None:
    values = [0.5, 0.7, 0.4]
    _, lo90, hi90 = confidence_interval(values, 0.90)
    _, lo99, hi99 = confidence_interval(values, 0.99)
    assert lo99 < lo90 < hi90 < hi99
    assert confidence_interval([2.5], 0.95) == (2.5, 2.5, 2.5)
    assert confidence_interval([], 0.95) is None
    with pytest.raises(ValueError):
        confidence_interval([1.0], 1.5)


def test_aggregate_skips_undefined_values_and_counts_them() -> None:
    per_seed = [
        {"sharpe": 1.0, "profit_factor": None, "trades": 10},
        {"sharpe": 3.0, "profit_factor": 2.0, "trades": 12},
        {"sharpe": 2.0, "profit_factor": None, "trades": 14},
    ]
    out = aggregate_seeds(per_seed, 0.95)
    assert out["mean"]["sharpe"] == pytest.approx(2.0)
    assert out["n"] == {"sharpe": 3, "profit_factor": 1, "trades": 3}
    # One seed defines the profit factor: a mean, and no interval (t over seeds needs three).
    assert out["mean"]["profit_factor"] == 2.0 and out["ci"]["profit_factor"] is None
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert out["ci"]["sharpe"] == pytest.approx([2.0 - half, 2.0 + half])
    assert aggregate_seeds([{"x": None}], 0.95) == {"mean": {"x": None}, "ci": {"x": None}, "n": {"x": 0}}
    two = aggregate_seeds([{"x": 1.0}, {"x": 3.0}], 0.95)
    assert two["mean"]["x"] == 2.0 and two["ci"]["x"] is None and two["n"]["x"] == 2
