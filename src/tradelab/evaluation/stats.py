"""Honest intervals and selection-aware Sharpe ratios for evaluation reports.

Every interval here says when it cannot be computed: the functions return ``None`` when there are too few
observations, and the report prints ``n/a (n=...)`` instead of a number that only looks like an interval.

- :func:`block_bootstrap_ci`: the main interval for daily P&L and Sharpe. Days are serially dependent (regimes last
  several sessions), so resampling single days would understate the spread; ``arch``'s stationary bootstrap
  resamples blocks of consecutive days with a block length estimated from the data (Politis & White 2004).
- :func:`wilson_ci`: rates (win rate, hit rate, parse rate). The Wilson score interval stays inside [0, 1] and
  keeps its coverage near 0 and 1, where a t-interval spills outside the bounds (``scipy.stats.binomtest``).
- :func:`seed_t_ci`: Student-t interval over per-seed values, only with at least three seeds (two seeds give a
  t quantile of 12.7 and an interval that says nothing).
- :func:`probabilistic_sharpe_ratio` and :func:`deflated_sharpe_ratio`: Bailey & Lopez de Prado's PSR (2012) and
  DSR (2014), computed with ``purgedcv``. DSR deflates the benchmark Sharpe by the expected maximum over the number
  of configurations tried, so a best-of-many agent is not reported as skill.
- Minimum detectable effects live in :mod:`tradelab.evaluation.power`.
- :func:`rank_auc`: how well a score orders two groups (the Mann-Whitney U over the pairs), e.g. whether an advisor's
  BUY-minus-SELL margin follows a cue even where its greedy answer is one side everywhere.

Heavy libraries (scipy, arch, purgedcv) are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

TRADING_DAYS_PER_YEAR = 252
"""Annualisation factor for daily series (Sharpe = daily mean / daily std * sqrt(252))."""

StatisticName = Literal["mean", "sum", "sharpe"]

MIN_FINITE_RESAMPLE_FRACTION = 0.9
"""Below this share of resamples with a defined statistic (e.g. a Sharpe of an all-flat resample), no interval."""


def _finite_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-D float64 array of the finite entries of ``values`` (NaN/inf and ``None`` dropped), order kept."""
    arr = np.asarray([np.nan if v is None else v for v in np.ravel(np.asarray(values, dtype=object))],
                     dtype=np.float64)
    return arr[np.isfinite(arr)]


def check_level(level: float) -> None:
    """Raise ValueError unless ``level`` (an interval's confidence) lies strictly between 0 and 1."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def annualised_sharpe(daily: np.ndarray, periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float:
    """Daily mean over daily sample std (ddof=1) times ``sqrt(periods_per_year)``; NaN when the std is zero.

    Args:
        daily: Daily returns or daily P&L (the ratio is scale free).
        periods_per_year: Observations per year.
    """
    if daily.size < 2:
        return math.nan
    std = float(np.std(daily, ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return math.nan
    return float(np.mean(daily)) / std * math.sqrt(periods_per_year)


def _statistic_function(statistic: StatisticName | Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
    if callable(statistic):
        return lambda x: float(statistic(x))
    if statistic == "mean":
        return lambda x: float(np.mean(x))
    if statistic == "sum":
        return lambda x: float(np.sum(x))
    if statistic == "sharpe":
        return annualised_sharpe
    raise ValueError(f"statistic must be 'mean', 'sum', 'sharpe' or a callable, got {statistic!r}")


def default_block_length(values: Sequence[float] | np.ndarray) -> int:
    """Block length for the stationary bootstrap of a daily series.

    ``arch``'s Politis-White estimate (rounded up), clipped to ``[1, n]``; when that estimate is undefined (a
    constant series, too few points) the rule of thumb ``ceil(n ** (1/3))``.

    Args:
        values: The series (finite values).
    """
    arr = _finite_array(values)
    n = int(arr.size)
    if n == 0:
        return 1
    fallback = max(1, math.ceil(n ** (1.0 / 3.0)))
    if n < 3 or float(np.std(arr)) == 0.0:
        return fallback
    from arch.bootstrap import optimal_block_length

    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = float(optimal_block_length(arr)["stationary"].iloc[0])
    except (ValueError, FloatingPointError, ZeroDivisionError):
        return fallback
    if not math.isfinite(estimate) or estimate <= 0:
        return fallback
    return int(min(n, max(1, math.ceil(estimate))))


def block_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    statistic: StatisticName | Callable[[np.ndarray], float] = "mean",
    level: float = 0.95,
    n_resamples: int = 2000,
    block_len: int | None = None,
    seed: int = 0,
    min_n: int = 5,
) -> tuple[float, float] | None:
    """Percentile interval of a statistic of a daily series from ``arch``'s stationary block bootstrap.

    Args:
        values: One value per day, in time order (e.g. daily net P&L in USD). Non-finite entries are dropped.
        statistic: ``"mean"``, ``"sum"``, ``"sharpe"`` (daily mean / daily std (ddof=1) * sqrt(252)), or a callable
            taking a 1-D float array and returning a float.
        level: Two-sided confidence level in (0, 1).
        n_resamples: Bootstrap resamples.
        block_len: Expected block length in days; ``None`` estimates it from the data
            (:func:`default_block_length`).
        seed: Seed of the resampling generator; the same seed and data give the same interval.
        min_n: Fewest values for which an interval is given.

    Returns:
        ``(low, high)``, or ``None`` when there are fewer than ``min_n`` values, the statistic is undefined on the
        data (a flat series' Sharpe), or it is undefined on more than 10% of the resamples.
    """
    check_level(level)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    arr = _finite_array(values)
    if arr.size < max(1, min_n):
        return None
    func = _statistic_function(statistic)
    if not math.isfinite(func(arr)):
        return None
    length = default_block_length(arr) if block_len is None else int(block_len)
    if length < 1:
        raise ValueError(f"block_len must be >= 1, got {block_len}")
    from arch.bootstrap import StationaryBootstrap

    bootstrap = StationaryBootstrap(length, arr, seed=np.random.default_rng(seed))
    draws = np.asarray(bootstrap.apply(func, reps=n_resamples), dtype=np.float64).ravel()
    finite = draws[np.isfinite(draws)]
    if finite.size < MIN_FINITE_RESAMPLE_FRACTION * draws.size:
        return None
    # A statistic undefined on a few degenerate resamples (all-zero days) is dropped there, as arch's percentile
    # method would otherwise return NaN for the whole interval.
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def wilson_ci(successes: int, n: int, *, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``).

    Args:
        successes: Number of successes, ``0 <= successes <= n``.
        n: Number of trials.
        level: Two-sided confidence level in (0, 1).

    Returns:
        ``(low, high)`` inside [0, 1], or ``None`` when ``n == 0``.
    """
    check_level(level)
    successes, n = int(successes), int(n)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None
    from scipy.stats import binomtest

    interval = binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def seed_t_ci(values: Sequence[float] | np.ndarray, *, level: float = 0.95,
              min_seeds: int = 3) -> tuple[float, float] | None:
    """Student-t interval of the mean of per-seed values.

    Args:
        values: One value per seed; non-finite values and ``None`` are dropped.
        level: Two-sided confidence level in (0, 1).
        min_seeds: Fewest seeds for which an interval is given (at least 2).

    Returns:
        ``(low, high)``, or ``None`` with fewer than ``min_seeds`` values. Identical values give a zero-width
        interval at their common value.
    """
    check_level(level)
    arr = _finite_array(values)
    if arr.size < max(2, min_seeds):
        return None
    mean = float(np.mean(arr))
    sem = float(np.std(arr, ddof=1)) / math.sqrt(arr.size)
    if sem == 0.0:
        return mean, mean
    from scipy import stats

    low, high = stats.t.interval(level, df=arr.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def _sharpe_inputs(daily_returns: Sequence[float] | np.ndarray, min_n: int) -> np.ndarray | None:
    arr = _finite_array(daily_returns)
    if arr.size < max(2, min_n) or float(np.std(arr)) == 0.0:
        return None
    return arr


def probabilistic_sharpe_ratio(
    daily_returns: Sequence[float] | np.ndarray,
    *,
    benchmark_sharpe_annual: float = 0.0,
    periods_per_year: int = TRADING_DAYS_PER_YEAR,
    min_n: int = 5,
) -> float | None:
    """Probability that the true Sharpe ratio exceeds a benchmark, given the sample's length, skew and kurtosis.

    PSR (Bailey & Lopez de Prado 2012) as computed by ``purgedcv.probabilistic_sharpe_ratio``:
    ``Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))`` with the per-day Sharpe ``SR``
    (population std), sample skew and (non-excess) kurtosis.

    Args:
        daily_returns: Daily returns (or daily P&L; the ratio is scale free), time order.
        benchmark_sharpe_annual: The annualised Sharpe to beat; converted to per-day by ``/ sqrt(periods_per_year)``.
        periods_per_year: Observations per year.
        min_n: Fewest days for which a value is given.

    Returns:
        A probability in [0, 1], or ``None`` with fewer than ``min_n`` days, a flat series, or moments too extreme
        for the normal approximation.
    """
    arr = _sharpe_inputs(daily_returns, min_n)
    if arr is None:
        return None
    from purgedcv import probabilistic_sharpe_ratio as psr

    try:
        return float(psr(arr, benchmark_skill=benchmark_sharpe_annual / math.sqrt(periods_per_year)))
    except ValueError:
        return None


def sharpe_estimator_variance(daily_returns: Sequence[float] | np.ndarray) -> float | None:
    """Per-day variance of the Sharpe estimator, ``(1 - skew SR + (kurt - 1) / 4 SR^2) / (n - 1)``.

    Under the null that every configuration tried has no skill, the trial Sharpes scatter by this sampling variance,
    which makes it the deflation's spread when fewer than two trial Sharpes are known.

    Args:
        daily_returns: Daily returns, at least 4 values with non-zero variance (skew and kurtosis need them).

    Returns:
        The variance in per-day Sharpe units squared, or ``None`` when undefined.
    """
    arr = _sharpe_inputs(daily_returns, 4)
    if arr is None:
        return None
    from scipy import stats

    sharpe = float(np.mean(arr) / np.std(arr))
    skew = float(stats.skew(arr, bias=False))
    kurt = float(stats.kurtosis(arr, bias=False, fisher=False))
    variance = (1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe**2) / (arr.size - 1)
    return variance if math.isfinite(variance) and variance > 0 else None


def deflated_sharpe_ratio(
    daily_returns: Sequence[float] | np.ndarray,
    *,
    n_trials: int,
    trial_sharpes_annual: Sequence[float] | None = None,
    periods_per_year: int = TRADING_DAYS_PER_YEAR,
    min_n: int = 5,
) -> float | None:
    """Probability that the true Sharpe exceeds the best Sharpe expected by chance among ``n_trials`` tries.

    DSR (Bailey & Lopez de Prado 2014) as computed by ``purgedcv.deflated_sharpe_ratio``: PSR against
    ``SR* = sqrt(V) * ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))`` with Euler's ``g`` and ``N = n_trials``.
    With one trial it equals PSR against 0.

    Args:
        daily_returns: Daily returns (or daily P&L) of the reported agent, time order.
        n_trials: Configurations evaluated on this market so far, this one included (>= 1); the manifest's
            evaluation history counts them.
        trial_sharpes_annual: Annualised Sharpes of those configurations. With two or more finite values their
            variance (converted to per-day) is ``V``; otherwise ``V`` is the sampling variance of this agent's
            Sharpe estimator (:func:`sharpe_estimator_variance`), i.e. the spread pure-noise trials would show.
        periods_per_year: Observations per year.
        min_n: Fewest days for which a value is given.

    Returns:
        A probability in [0, 1], or ``None`` when PSR is undefined for the series.
    """
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    arr = _sharpe_inputs(daily_returns, min_n)
    if arr is None:
        return None
    variance = trial_sharpe_variance(trial_sharpes_annual, periods_per_year)
    if variance is None:
        variance = sharpe_estimator_variance(arr)
    if variance is None:
        return None
    from purgedcv import deflated_sharpe_ratio as dsr

    try:
        return float(dsr(arr, int(n_trials), variance))
    except ValueError:
        return None


def trial_sharpe_variance(trial_sharpes_annual: Sequence[float] | None,
                          periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """Sample variance (ddof=1) of annualised trial Sharpes, in per-day units; ``None`` with fewer than two."""
    if trial_sharpes_annual is None:
        return None
    arr = _finite_array(trial_sharpes_annual)
    if arr.size < 2:
        return None
    return float(np.var(arr, ddof=1)) / periods_per_year


def format_interval(interval: tuple[float, float] | None, n: int, *, unit: str = "",
                    digits: int = 2) -> str:
    """``[low, high] (n=...)`` or ``n/a (n=...)`` for a report cell.

    Args:
        interval: The interval or ``None``.
        n: How many observations (days, trades, seeds) stand behind it.
        unit: Name of the observations, e.g. ``"days"``; printed as ``n=12 days``.
        digits: Decimal places.
    """
    count = f"n={n}{' ' + unit if unit else ''}"
    if interval is None:
        return f"n/a ({count})"
    return f"[{interval[0]:,.{digits}f}, {interval[1]:,.{digits}f}] ({count})"


def rank_auc(scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray) -> float | None:
    """The probability that a random positive scores above a random negative (ties count half): Mann-Whitney U / n1 n2.

    0.5 is no ordering, 1.0 puts every positive above every negative, 0.0 the reverse. A constant offset of the scores
    does not change it, which is what separates "ranks the prompts by the cue" from "answers the cue greedily".

    Args:
        scores: One finite score per item.
        positive: Whether each item belongs to the positive group.

    Returns:
        The AUC, or None when either group is empty.

    Raises:
        ValueError: The two sequences differ in length, or a score is not finite.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(positive, dtype=bool).ravel()
    if labels.shape != values.shape:
        raise ValueError(f"rank_auc: {values.size} scores but {labels.size} labels")
    if not np.isfinite(values).all():
        raise ValueError("rank_auc: every score must be finite")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    ranks = ((last - counts + 1 + last) / 2.0)[inverse]  # 1-based ranks, tied values sharing their mean rank
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
