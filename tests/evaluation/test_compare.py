"""Hybrid minus PPO-only on the same days: the paired difference, its interval, its minimum detectable effect."""

from __future__ import annotations

import numpy as np
import pytest

from tradelab.evaluation.compare import comparison_lines, comparisons_section, paired_difference
from tradelab.evaluation.power import power_multiplier
from tradelab.evaluation.stats import block_bootstrap_ci


def _days(seed: int, mean: float) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, 100.0, size=12))


def test_the_difference_is_paired_per_day_with_an_mde_from_its_interval() -> None:
    hybrid = {0: _days(1, 50.0), 1: _days(2, 50.0)}
    ppo = {0: _days(3, 0.0), 1: _days(4, 0.0)}
    diff = paired_difference(hybrid, ppo, seed=0)
    days = [a - b for s in (0, 1) for a, b in zip(hybrid[s], ppo[s])]
    assert diff["net_pnl_usd"] == pytest.approx(sum(days) / 2) and diff["days"] == 24 and diff["seeds"] == 2
    low, high = block_bootstrap_ci(days, statistic="sum", seed=0)
    assert diff["net_pnl_usd_ci"] == pytest.approx([low / 2, high / 2])
    assert diff["mde_usd"] == pytest.approx(power_multiplier() * (high - low) / 2 / 2 / 1.959964, rel=1e-4)
    # Other days, or other seeds, cannot be paired.
    assert paired_difference(hybrid, {0: ppo[0][:-1], 1: ppo[1]}) is None
    assert paired_difference(hybrid, {0: ppo[0]}) is None
    assert comparisons_section({"ppo": ppo}, level=0.95) == {"hybrid_minus_ppo": None}


def test_the_report_lines_say_what_a_miss_could_not_see() -> None:
    same = {0: _days(5, 0.0), 1: _days(6, 0.0)}
    noise = {0: [d + e for d, e in zip(same[0], _days(7, 0.0))], 1: [d + e for d, e in zip(same[1], _days(8, 0.0))]}
    section = comparisons_section({"hybrid": noise, "ppo": same}, level=0.95)
    diff = section["hybrid_minus_ppo"]
    assert diff["net_pnl_usd_ci"][0] < 0 < diff["net_pnl_usd_ci"][1]
    text = "\n".join(comparison_lines(section, 0.95))
    assert "Minimum detectable effect at 80% power" in text and f"{diff['mde_usd']:,.2f}" in text
    assert "would be missed" in text
    short = paired_difference({0: [1.0, 2.0]}, {0: [0.0, 0.0]})
    assert short["net_pnl_usd_ci"] is None and short["mde_usd"] is None
    assert "too few days" in "\n".join(comparison_lines({"hybrid_minus_ppo": short}, 0.95))
