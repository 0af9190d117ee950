"""Per-agent loop figures read from an evaluation ``report.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tradelab.evaluation.intervals import MIN_DAYS
from tradelab.loop.report import agents_from_report, pooled_sharpe


def _report(path: Path, daily_by_seed: dict[str, list[float]], per_seed_sharpe: list[float]) -> Path:
    per_seed = [{"net_pnl_usd": sum(days), "days": len(days), "trades": 2 * len(days), "sharpe": sharpe}
                for days, sharpe in zip(daily_by_seed.values(), per_seed_sharpe)]
    path.write_text(json.dumps({
        "agents": {"hybrid": {"per_seed": per_seed}},
        "daily_pnl_usd": {"hybrid": daily_by_seed},
        "settings": {"aliases": {}},
    }))
    return path


def test_sharpe_pools_every_seeds_days_instead_of_averaging_per_seed_ratios(tmp_path: Path) -> None:
    daily = {"0": [900.0, 1100.0, 950.0], "1": [1000.0, 1200.0, 400.0]}
    # Per-seed ratios of a few days are noise; the report must not average them into a negative Sharpe.
    report = _report(tmp_path / "report.json", daily, per_seed_sharpe=[-190.0, 60.0])
    hybrid = agents_from_report(report)["agents"]["hybrid"]
    pooled = np.array(daily["0"] + daily["1"])
    assert hybrid["sharpe"] == pytest.approx(pooled.mean() / pooled.std(ddof=1) * math.sqrt(252))
    assert hybrid["sharpe"] > 0 and hybrid["days"] == 6 and hybrid["trades_per_day"] == pytest.approx(2.0)


def test_too_few_days_or_no_spread_give_no_sharpe() -> None:
    days = [100.0, -50.0, 80.0, 20.0, 10.0, 60.0, -30.0]
    assert MIN_DAYS <= len(days)
    assert pooled_sharpe(days[: MIN_DAYS - 1]) is None
    assert pooled_sharpe([100.0] * MIN_DAYS) is None
    assert pooled_sharpe(days) > 0
