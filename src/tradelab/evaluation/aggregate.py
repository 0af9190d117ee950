"""Across-seed statistics: mean and a Student-t confidence interval for every numeric metric.

The interval needs at least :data:`MIN_SEEDS` seeds; with fewer it is ``None`` (two seeds give a t quantile of 12.7
and an interval that only looks like information).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tradelab.evaluation.stats import seed_t_ci

MIN_SEEDS = 3
"""Fewest seeds for which :func:`aggregate_seeds` gives an interval."""


def confidence_interval(values: Sequence[float], level: float) -> tuple[float, float, float] | None:
    """Mean and the two-sided Student-t interval of the mean.

    Args:
        values: One value per seed (finite numbers).
        level: Confidence level, e.g. 0.95.

    Returns:
        ``(mean, low, high)``; with a single value the interval collapses to the mean. ``None`` for no values.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    if n == 1:
        return mean, mean, mean
    from scipy import stats

    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * math.sqrt(variance / n)
    return mean, mean - half, mean + half


def aggregate_seeds(per_seed: Sequence[dict[str, Any]], level: float) -> dict[str, Any]:
    """Combine one metrics dict per seed into means, intervals and the per-seed values.

    A metric is averaged over the seeds where it is defined (not ``None``); ``n`` says how many that was.

    Args:
        per_seed: Metric dicts (numbers or ``None``) for one agent, one per seed.
        level: Confidence level for the interval.

    Returns:
        ``{"mean": {k: v}, "ci": {k: [low, high]}, "n": {k: count}}`` over the keys of the first dict; a key defined
        on no seed has mean ``None``; ci is ``None`` where fewer than :data:`MIN_SEEDS` seeds define the key.
    """
    keys = list(per_seed[0]) if per_seed else []
    mean: dict[str, float | None] = {}
    ci: dict[str, list[float] | None] = {}
    counts: dict[str, int] = {}
    for key in keys:
        values = [float(m[key]) for m in per_seed if isinstance(m.get(key), (int, float))
                  and not isinstance(m.get(key), bool) and math.isfinite(float(m[key]))]
        counts[key] = len(values)
        mean[key] = math.fsum(values) / len(values) if values else None
        interval = seed_t_ci(values, level=level, min_seeds=MIN_SEEDS)
        ci[key] = [interval[0], interval[1]] if interval else None
    return {"mean": mean, "ci": ci, "n": counts}
