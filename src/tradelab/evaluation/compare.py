"""Agent against agent on the same holdout days: the paired difference, its interval and what the test could detect.

The hybrid (PPO with the advisor) and PPO-only run the same episodes, day for day, so their difference is measured
paired: each day's P&L difference, summed over the days and divided by the seed count (net P&L per seed, as the
report's other figures), with a stationary block bootstrap over the days (:func:`block_bootstrap_ci`). The minimum
detectable effect (80% power, 5% two-sided) comes from that interval (:func:`mde_from_interval`), so it counts the
days' serial dependence: a difference that misses its goal can then say whether the test could have seen it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tradelab.evaluation.power import mde_from_interval
from tradelab.evaluation.stats import block_bootstrap_ci

MIN_DAYS = 5
"""Fewest paired days for an interval (the report's other bootstrap intervals use the same floor)."""


def _days(by_seed: Mapping[Any, Sequence[float]]) -> list[float]:
    return [float(v) for key in sorted(by_seed, key=int) for v in by_seed[key]]


def paired_difference(daily_a: Mapping[Any, Sequence[float]], daily_b: Mapping[Any, Sequence[float]], *,
                      level: float = 0.95, seed: int = 0) -> dict[str, Any] | None:
    """Net P&L per seed of ``a`` minus ``b`` on the same days, with its interval and minimum detectable effect.

    Args:
        daily_a: Seed -> daily net P&L (USD) of the first agent.
        daily_b: The same for the second agent; each seed must have as many days as in ``daily_a``.
        level: Interval level.
        seed: Bootstrap seed.

    Returns:
        ``{net_pnl_usd, net_pnl_usd_ci, mde_usd, days, seeds}`` (``*_ci`` and ``mde_usd`` None with fewer than
        :data:`MIN_DAYS` days), or None when the two did not run the same days.
    """
    seeds = sorted(daily_a, key=int)
    if not seeds or sorted(daily_b, key=int) != seeds or any(len(daily_a[s]) != len(daily_b[s]) for s in seeds):
        return None
    diff = [a - b for a, b in zip(_days(daily_a), _days(daily_b))]
    n_seeds = len(seeds)
    interval = block_bootstrap_ci(diff, statistic="sum", level=level, seed=seed) if len(diff) >= MIN_DAYS else None
    ci = [interval[0] / n_seeds, interval[1] / n_seeds] if interval else None
    return {"net_pnl_usd": sum(diff) / n_seeds, "net_pnl_usd_ci": ci, "mde_usd": mde_from_interval(ci, level=level),
            "days": len(diff), "seeds": n_seeds}


def comparisons_section(daily_pnl: Mapping[str, Mapping[Any, Sequence[float]]], *, level: float,
                        seed: int = 0) -> dict[str, Any]:
    """The report's ``comparisons``: ``hybrid_minus_ppo`` when both agents ran (None otherwise)."""
    if "hybrid" not in daily_pnl or "ppo" not in daily_pnl:
        return {"hybrid_minus_ppo": None}
    return {"hybrid_minus_ppo": paired_difference(daily_pnl["hybrid"], daily_pnl["ppo"], level=level, seed=seed)}


def comparison_lines(comparisons: Mapping[str, Any] | None, level: float) -> list[str]:
    """Markdown lines of the ``comparisons`` section (empty without one)."""
    diff = (comparisons or {}).get("hybrid_minus_ppo")
    if not diff:
        return []
    ci, mde = diff["net_pnl_usd_ci"], diff["mde_usd"]
    interval = f"[{ci[0]:,.2f}, {ci[1]:,.2f}]" if ci else f"n/a (n={diff['days']} days)"
    if ci is None:
        verdict = "too few days for an interval"
    elif ci[0] > 0:
        verdict = "the hybrid is better (lower bound above 0)"
    elif ci[1] < 0:
        verdict = "PPO-only is better (upper bound below 0)"
    else:
        verdict = (f"not told apart from 0; a true difference below {mde:,.2f} USD per seed would be missed more "
                   "than one time in five at this size")
    mde_text = f"{mde:,.2f}" if mde is not None else "n/a"
    return ["## Hybrid minus PPO-only",
            f"Paired on the same {diff['days']} days ({diff['seeds']} seed(s)), net P&L per seed: "
            f"{diff['net_pnl_usd']:,.2f} USD, {level:.0%} interval {interval} (day-block bootstrap). Minimum "
            f"detectable effect at 80% power, 5% two-sided: {mde_text} USD. Verdict: {verdict}."]
