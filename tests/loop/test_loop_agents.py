"""Per-agent loop figures read from an evaluation ``report.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradelab.loop.report import agents_from_report


def _report(path: Path, daily_by_seed: dict[str, list[float]], per_seed_sharpe: list[float],
            pooled_sharpe: float) -> Path:
    per_seed = [{"net_pnl_usd": sum(days), "days": len(days), "trades": 2 * len(days), "sharpe": sharpe}
                for days, sharpe in zip(daily_by_seed.values(), per_seed_sharpe)]
    pooled = {"rows": {"sharpe_pooled": {"value": pooled_sharpe, "ci": None, "n": 6, "unit": "days"}}}
    path.write_text(json.dumps({
        "agents": {"hybrid": {"per_seed": per_seed}, "hybrid_soft_grpo": {"per_seed": per_seed}},
        "daily_pnl_usd": {"hybrid": daily_by_seed},
        "intervals": {"hybrid": pooled},
        "settings": {"aliases": {"hybrid_soft_grpo": "hybrid"}},
    }))
    return path


def test_sharpe_is_the_evaluations_pooled_one_not_the_mean_of_per_seed_ratios(tmp_path: Path) -> None:
    daily = {"0": [900.0, 1100.0, 950.0], "1": [1000.0, 1200.0, 400.0]}
    # Per-seed ratios of a few days are noise; their mean (-65) must not stand for a hybrid that made money.
    report = _report(tmp_path / "report.json", daily, per_seed_sharpe=[-190.0, 60.0], pooled_sharpe=12.5)
    agents = agents_from_report(report)["agents"]
    assert agents["hybrid"]["sharpe"] == 12.5
    assert agents["hybrid_soft_grpo"]["sharpe"] == 12.5, "an alias reads the agent it stands for"
    assert agents["hybrid"]["days"] == 6 and agents["hybrid"]["trades_per_day"] == pytest.approx(2.0)
