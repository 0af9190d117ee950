"""Portfolio metrics against empyrical and against hand computation."""

from __future__ import annotations

import math

import empyrical
import numpy as np
import pytest

from tradelab.evaluation.metrics import daily_returns, max_drawdown_usd, portfolio_metrics

BALANCE = 50_000.0
DAILY_PNL = [250.0, -400.0, 125.5, 0.0, 610.0, -80.0, -300.0, 450.0]


def test_ratios_match_empyrical_on_known_series() -> None:
    returns = np.array(DAILY_PNL) / BALANCE
    got = portfolio_metrics(DAILY_PNL, BALANCE)
    assert got["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns, period="daily"))
    assert got["sortino"] == pytest.approx(empyrical.sortino_ratio(returns, period="daily"))
    assert got["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns))
    assert got["calmar"] == pytest.approx(empyrical.calmar_ratio(returns, period="daily"))
    assert got["annual_return"] == pytest.approx(empyrical.annual_return(returns, period="daily"))


def test_ratios_match_hand_computation() -> None:
    r = np.array(DAILY_PNL) / BALANCE
    got = portfolio_metrics(DAILY_PNL, BALANCE)
    assert got["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    downside = math.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    assert got["sortino"] == pytest.approx(r.mean() / downside * math.sqrt(252))
    wealth = np.concatenate([[1.0], np.cumprod(1 + r)])
    mdd = float(np.min(wealth / np.maximum.accumulate(wealth) - 1))
    assert got["max_drawdown"] == pytest.approx(mdd)
    annual = float(np.prod(1 + r) ** (252 / len(r)) - 1)
    assert got["calmar"] == pytest.approx(annual / abs(mdd))


def test_dollar_figures_are_exact() -> None:
    got = portfolio_metrics(DAILY_PNL, BALANCE)
    assert got["net_pnl_usd"] == pytest.approx(sum(DAILY_PNL))
    assert got["days"] == len(DAILY_PNL)
    # cumulative: 250, -150, -24.5, -24.5, 585.5, 505.5, 205.5, 655.5 -> peak 250 to trough -150 = -400
    assert got["max_drawdown_usd"] == pytest.approx(-400.0)
    assert max_drawdown_usd([-100.0, -50.0]) == pytest.approx(-150.0)  # the curve starts at 0
    assert max_drawdown_usd([]) == 0.0


def test_undefined_ratios_are_none_not_numbers() -> None:
    flat = portfolio_metrics([0.0] * 5, BALANCE)
    assert flat["net_pnl_usd"] == 0.0 and flat["max_drawdown"] == 0.0
    assert flat["sharpe"] is None and flat["calmar"] is None and flat["sortino"] is None
    only_gains = portfolio_metrics([100.0, 200.0, 50.0], BALANCE)
    assert only_gains["sortino"] is None  # no downside: infinite, not representable in JSON
    one_day = portfolio_metrics([100.0], BALANCE)
    assert one_day["sharpe"] is None and one_day["net_pnl_usd"] == 100.0


def test_returns_are_on_the_starting_balance() -> None:
    np.testing.assert_allclose(daily_returns([500.0, -250.0], 50_000.0), [0.01, -0.005])
    with pytest.raises(ValueError, match="starting_balance_usd"):
        daily_returns([1.0], 0.0)
