"""Minimum detectable effects: how large a true effect a comparison of this size finds with 80% power.

:func:`mde_mean`, :func:`mde_mean_difference`, :func:`mde_proportions` and :func:`mde_from_interval` give the
smallest true effect a two-sided test at ``alpha`` finds with probability ``power``, by the normal approximation. A
comparison that missed its goal can then say whether the test could have seen the effect at all (the loop report,
the evaluation report's hybrid minus PPO-only, ``bench/learning.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tradelab.evaluation.stats import check_level

POWER = 0.8
"""Default power of the minimum-detectable-effect functions."""
ALPHA = 0.05
"""Default two-sided significance level of the minimum-detectable-effect functions."""


def power_multiplier(*, alpha: float = ALPHA, power: float = POWER) -> float:
    """``z(1 - alpha/2) + z(power)``: how many standard errors a true effect must be to be found with ``power``.

    2.80 at 5% two-sided and 80% power, 3.24 at 90% (Bloom 1995, "Minimum detectable effects", Evaluation Review
    19(5), Table 1).
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}")
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    return z(1.0 - alpha / 2.0) + z(power)


def mde_mean(sd: float, n: int, *, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Minimum detectable effect of one mean, or of a paired difference (``sd`` of the differences): M * sd / sqrt(n).

    Returns:
        The effect in the units of ``sd``, or None with fewer than 2 observations or a non-finite ``sd``.
    """
    if n < 2 or not math.isfinite(sd) or sd < 0:
        return None
    return power_multiplier(alpha=alpha, power=power) * sd / math.sqrt(n)


def mde_mean_difference(sd: float, n1: int, n2: int, *, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """Minimum detectable difference of two independent means with a common ``sd``: M * sd * sqrt(1/n1 + 1/n2).

    With ``sd = 1`` it is Cohen's d: 0.20 at 393 per group (Cohen 1988, Table 2.4.1, normal approximation).
    """
    if min(n1, n2) < 2 or not math.isfinite(sd) or sd < 0:
        return None
    return power_multiplier(alpha=alpha, power=power) * sd * math.sqrt(1.0 / n1 + 1.0 / n2)


def mde_proportions(p_base: float, n_base: int, n_other: int, *, alpha: float = ALPHA,
                    power: float = POWER) -> float | None:
    """Smallest rise of a proportion above ``p_base`` that a two-sided test of two independent proportions detects.

    Solves ``delta = M * sqrt(p(1-p)/n_base + (p+delta)(1-p-delta)/n_other)`` (the unpooled normal approximation,
    as in Chow, Shao & Wang 2008, Sample Size Calculations in Clinical Research, section 4.2): 0.5 -> 0.6 needs 385
    per group. Two rates measured on the same prompts are paired; treating them as independent is conservative.

    Returns:
        ``delta``, or None when a sample is empty or no rise up to 1 is detectable.
    """
    if n_base < 1 or n_other < 1 or not 0.0 <= p_base <= 1.0:
        return None
    m = power_multiplier(alpha=alpha, power=power)

    def gap(delta: float) -> float:
        other = p_base + delta
        return delta - m * math.sqrt(p_base * (1 - p_base) / n_base + other * (1 - other) / n_other)

    high = 1.0 - p_base
    if high <= 0.0 or gap(high) < 0.0:
        return None
    low = 0.0
    for _ in range(60):  # bisection: gap rises from below 0 at delta = 0 to >= 0 at high
        mid = 0.5 * (low + high)
        low, high = (mid, high) if gap(mid) < 0.0 else (low, mid)
    return high


def mde_from_interval(interval: Sequence[float] | None, *, level: float = 0.95, alpha: float = ALPHA,
                      power: float = POWER) -> float | None:
    """Minimum detectable effect of an estimate whose ``level`` interval is ``interval``: M * SE.

    The standard error is the interval's half-width over ``z((1 + level)/2)``, so an interval from a day-block
    bootstrap (prompts or days that move together) gives an MDE that counts the clustering, which a formula on the
    raw n would not. For a 95% interval and 80% power, MDE = 1.43 x the half-width.

    Returns:
        The effect in the interval's units, or None without an interval or with a zero-width one (every resample
        gave the same value, e.g. a paired gain of exactly 0 on every prompt: no spread to estimate an error from).
    """
    if interval is None:
        return None
    check_level(level)
    from statistics import NormalDist

    low, high = float(interval[0]), float(interval[1])
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return None
    se = 0.5 * (high - low) / NormalDist().inv_cdf(0.5 + level / 2.0)
    return power_multiplier(alpha=alpha, power=power) * se
