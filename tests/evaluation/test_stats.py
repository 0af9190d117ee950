"""Intervals and selection-aware Sharpe ratios on hand-built series with hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradelab.evaluation.power import (
    mde_from_interval,
    mde_mean,
    mde_mean_difference,
    mde_proportions,
    power_multiplier,
)
from tradelab.evaluation.stats import (
    block_bootstrap_ci,
    default_block_length,
    deflated_sharpe_ratio,
    format_interval,
    probabilistic_sharpe_ratio,
    rank_auc,
    seed_t_ci,
    sharpe_estimator_variance,
    wilson_ci,
)

# ---------------------------------------------------------------- Wilson


def test_wilson_matches_textbook_values() -> None:
    # Wilson (1927) score interval, z = 1.959964: 0/10 -> [0, 0.2775]; 1/10 -> [0.0179, 0.4042] (Newcombe 1998,
    # Table I); 81/263 -> [0.2553, 0.3662] (Agresti & Coull 1998's worked example).
    low, high = wilson_ci(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_ci(1, 10)
    assert (low, high) == pytest.approx((0.0179, 0.4042), abs=1e-4)
    low, high = wilson_ci(81, 263)
    assert (low, high) == pytest.approx((0.2553, 0.3662), abs=1e-4)


def test_wilson_matches_the_closed_form_and_stays_in_bounds() -> None:
    z = 1.959963984540054
    for k, n in [(3, 7), (7, 7), (50, 120)]:
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = wilson_ci(k, n)
        assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-10)
        assert 0.0 <= low <= p <= high <= 1.0


def test_wilson_none_without_trials_and_rejects_bad_counts() -> None:
    assert wilson_ci(0, 0) is None
    with pytest.raises(ValueError):
        wilson_ci(5, 3)


# ---------------------------------------------------------------- t over seeds


def test_seed_t_interval_hand_worked_and_none_below_three_seeds() -> None:
    # mean 2, sd 1, sem 1/sqrt(3), t_{0.975, 2} = 4.302653: half width 2.484138.
    low, high = seed_t_ci([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-5)
    assert seed_t_ci([1.0, 2.0]) is None
    assert seed_t_ci([1.0, None, float("nan"), 2.0]) is None
    assert seed_t_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)


# ---------------------------------------------------------------- block bootstrap


def test_bootstrap_none_for_too_few_days_and_flat_sharpe() -> None:
    assert block_bootstrap_ci([1.0, 2.0, 3.0, 4.0]) is None
    assert block_bootstrap_ci([1.0, 2.0, 3.0, 4.0], min_n=4) is not None
    assert block_bootstrap_ci([0.0] * 30, statistic="sharpe") is None


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    values = np.random.default_rng(3).normal(10.0, 50.0, 40)
    first = block_bootstrap_ci(values, seed=11, n_resamples=400)
    assert first == block_bootstrap_ci(values, seed=11, n_resamples=400)
    assert first != block_bootstrap_ci(values, seed=12, n_resamples=400)


def test_bootstrap_mean_interval_covers_the_true_mean_on_iid_normal_days() -> None:
    rng = np.random.default_rng(2024)
    true_mean, replications, covered = 0.3, 60, 0
    for rep in range(replications):
        sample = rng.normal(true_mean, 1.0, 60)
        low, high = block_bootstrap_ci(sample, n_resamples=400, seed=rep)
        assert low < float(np.mean(sample)) < high
        covered += low <= true_mean <= high
    # Nominal 95%; percentile intervals on 60 days run a little short. A broken interval (too narrow, shifted)
    # covers far less than this.
    assert covered / replications >= 0.85


def test_block_bootstrap_widens_for_serially_dependent_days() -> None:
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 1.0, 300)
    ar = np.empty_like(noise)
    ar[0] = noise[0]
    for t in range(1, ar.size):
        ar[t] = 0.85 * ar[t - 1] + noise[t]
    assert default_block_length(ar) > 3
    iid_low, iid_high = block_bootstrap_ci(ar, block_len=1, n_resamples=600)
    block_low, block_high = block_bootstrap_ci(ar, n_resamples=600)
    # The long-run variance of an AR(1) with phi=0.85 is (1+phi)/(1-phi) ~ 12x the iid one: ~3.5x the width.
    assert (block_high - block_low) > 2.0 * (iid_high - iid_low)


def test_bootstrap_sum_and_sharpe_statistics() -> None:
    days = np.random.default_rng(9).normal(100.0, 400.0, 50)
    low, high = block_bootstrap_ci(days, statistic="sum", n_resamples=500)
    assert low < days.sum() < high
    sharpe = days.mean() / days.std(ddof=1) * math.sqrt(252)
    low, high = block_bootstrap_ci(days, statistic="sharpe", n_resamples=500)
    assert low < sharpe < high
    low_c, high_c = block_bootstrap_ci(days, statistic=lambda x: float(np.median(x)), n_resamples=500)
    assert low_c < float(np.median(days)) < high_c


def test_format_interval_says_how_many() -> None:
    assert format_interval(None, 2, unit="seeds") == "n/a (n=2 seeds)"
    assert format_interval((-1.5, 2.25), 30, unit="days") == "[-1.50, 2.25] (n=30 days)"


# ---------------------------------------------------------------- PSR / DSR


HAND_SERIES = [-0.01, 0.0, 0.01, 0.02, 0.03]
"""Mean 0.01, population sd 0.01*sqrt(2): per-day Sharpe 1/sqrt(2); skew 0 (symmetric); unbiased excess kurtosis
-1.2 (G2 = ((n+1) g2 + 6)(n-1)/((n-2)(n-3)) with g2 = 6.8/4 - 3 = -1.3), so kurtosis 1.8. PSR denominator
1 - 0 + (1.8 - 1)/4 * 0.5 = 1.1; z = (1/sqrt(2)) * sqrt(4) / sqrt(1.1) = 1.348400; Phi(z) = 0.911238."""


def test_psr_matches_the_hand_worked_example() -> None:
    assert probabilistic_sharpe_ratio(HAND_SERIES) == pytest.approx(0.911238, abs=1e-5)
    # Against an annualised benchmark of 0.5 * sqrt(252) (per day 0.5): z = (0.707107 - 0.5) * 2 / sqrt(1.1)
    # = 0.394938; Phi(z) = 0.653555.
    psr = probabilistic_sharpe_ratio(HAND_SERIES, benchmark_sharpe_annual=0.5 * math.sqrt(252))
    assert psr == pytest.approx(0.653555, abs=1e-5)


def test_dsr_matches_the_hand_worked_example() -> None:
    # Trial Sharpes (annualised) 0, 0.5*sqrt(252), sqrt(252): per-day variance 0.25. N = 10:
    # E[max z] = (1 - 0.577216) * Phi^-1(0.9) + 0.577216 * Phi^-1(1 - 1/(10 e))
    #          = 0.422784 * 1.281552 + 0.577216 * 1.789484 = 1.574752; SR* = 0.5 * 1.574752 = 0.787376.
    # z = (0.707107 - 0.787376) * 2 / sqrt(1.1) = -0.153068; Phi(z) = 0.439173.
    trials = [0.0, 0.5 * math.sqrt(252), math.sqrt(252)]
    dsr = deflated_sharpe_ratio(HAND_SERIES, n_trials=10, trial_sharpes_annual=trials)
    assert dsr == pytest.approx(0.439173, abs=1e-4)
    # One trial: nothing to deflate, DSR is PSR against zero.
    assert deflated_sharpe_ratio(HAND_SERIES, n_trials=1) == pytest.approx(0.911238, abs=1e-5)


def test_dsr_falls_as_trials_grow_and_uses_the_estimator_variance_without_trial_sharpes() -> None:
    days = np.random.default_rng(1).normal(0.002, 0.01, 120)
    values = [deflated_sharpe_ratio(days, n_trials=n) for n in (1, 5, 50)]
    assert values[0] > values[1] > values[2]
    variance = sharpe_estimator_variance(days)
    assert variance == pytest.approx(1.0 / 119.0, rel=0.2)


def test_psr_none_for_too_few_or_flat_days() -> None:
    assert probabilistic_sharpe_ratio([0.01, 0.02, 0.03]) is None
    assert probabilistic_sharpe_ratio([0.0] * 20) is None
    assert deflated_sharpe_ratio([0.0] * 20, n_trials=3) is None
    with pytest.raises(ValueError):
        deflated_sharpe_ratio(HAND_SERIES, n_trials=0)


def test_power_multiplier_is_blooms_textbook_value() -> None:
    # Bloom (1995), Table 1: two-tailed 5% test, 80% power -> 2.80 standard errors; 90% power -> 3.24.
    assert power_multiplier() == pytest.approx(2.8016, abs=1e-4)
    assert power_multiplier(power=0.9) == pytest.approx(3.2415, abs=1e-4)


def test_mde_of_two_means_matches_cohens_table() -> None:
    # Cohen (1988), Table 2.4.1: d = 0.20 needs 393 per group at alpha .05 two-tailed and power .80.
    assert mde_mean_difference(1.0, 393, 393) == pytest.approx(0.20, abs=1e-3)
    # d = 0.50 needs 64 per group (the t table's +1 over the normal approximation's 62.8).
    assert mde_mean_difference(1.0, 64, 64) == pytest.approx(0.50, abs=0.01)
    # A paired / one-sample mean: M * sd / sqrt(n), and None without a spread estimate.
    assert mde_mean(2.0, 100) == pytest.approx(2.8016 * 2.0 / 10.0, abs=1e-4)
    assert mde_mean(1.0, 1) is None and mde_mean(float("nan"), 50) is None


def test_mde_of_two_proportions_matches_the_normal_approximation_table() -> None:
    # Chow, Shao & Wang (2008), section 4.2 (unpooled): 0.5 -> 0.6 at alpha .05 two-sided, power .80 needs 385 per
    # group, so the minimum detectable rise from 0.5 with 385 per group is 0.10.
    assert mde_proportions(0.5, 385, 385) == pytest.approx(0.10, abs=1e-3)
    # More prompts detect less; a base at 1 has no room to rise.
    assert mde_proportions(0.5, 4 * 385, 4 * 385) < 0.06
    assert mde_proportions(1.0, 100, 100) is None and mde_proportions(0.5, 0, 10) is None
    # The arithmetic: at a 0.53 hit rate and 480 prompts an effect below ~0.09 is not seen.
    assert 0.085 < mde_proportions(0.53, 480, 480) < 0.095


def test_mde_from_an_interval_is_143_half_widths_at_95_percent() -> None:
    assert mde_from_interval([-1.0, 3.0]) == pytest.approx(2.0 * 2.8016 / 1.95996, abs=1e-4)
    assert mde_from_interval(None) is None and mde_from_interval([0.0, 0.0]) is None
    assert mde_from_interval([0.0, 1.0], level=0.9) > mde_from_interval([0.0, 1.0], level=0.95)


# ---------------------------------------------------------------- rank AUC


def test_rank_auc_counts_ordered_pairs_and_ties_count_half() -> None:
    assert rank_auc([1.0, 2.0, 3.0, 4.0], [False, False, True, True]) == 1.0
    assert rank_auc([1.0, 2.0, 3.0, 4.0], [True, True, False, False]) == 0.0
    # positives 4 and 2, negatives 3 and 1: 3 of the 4 pairs ordered.
    assert rank_auc([4.0, 3.0, 2.0, 1.0], [True, False, True, False]) == pytest.approx(0.75)
    # one positive tied with one of two negatives: (0.5 + 1) / 2.
    assert rank_auc([1.0, 1.0, 0.0], [True, False, False]) == pytest.approx(0.75)
    assert rank_auc([5.0, 5.0, 5.0, 5.0], [True, False, True, False]) == pytest.approx(0.5)


def test_rank_auc_ignores_an_offset_and_matches_scipy() -> None:
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.4
    scores = np.round(rng.normal(size=200) + 0.5 * labels, 1)  # rounded: ties
    u = mannwhitneyu(scores[labels], scores[~labels]).statistic / (labels.sum() * (~labels).sum())
    assert rank_auc(scores, labels) == pytest.approx(u)
    assert rank_auc(scores - 7.0, labels) == pytest.approx(u)


def test_rank_auc_none_with_one_group_and_refuses_bad_input() -> None:
    assert rank_auc([1.0, 2.0], [True, True]) is None
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        rank_auc([1.0, 2.0], [True, False, True])
    with pytest.raises(ValueError, match="finite"):
        rank_auc([1.0, float("nan")], [True, False])
