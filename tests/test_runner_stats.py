"""Confidence intervals over seeds and claim verdicts (symlab.runner.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symlab.runner import (
    Interval,
    RunnerError,
    combine_verdicts,
    correlation_interval,
    difference_interval,
    mean_interval,
    proportion_interval,
    slope_interval,
)


def test_intervals_are_seeded_and_contain_the_estimate():
    vals = np.random.default_rng(0).normal(0.3, 0.2, 15).tolist()
    a, b = mean_interval(vals, seed=3), mean_interval(vals, seed=3)
    assert a == b and a.low <= a.estimate <= a.high and a.n == 15
    assert mean_interval(vals, seed=4) != a  # another generator, another resample


def test_coverage_of_the_mean_is_near_nominal():
    rng = np.random.default_rng(0)
    hits = sum(
        (iv := mean_interval(rng.normal(1.0, 1.0, 20), seed=i, n_resamples=2000)).low
        <= 1.0
        <= iv.high
        for i in range(100)
    )
    assert 85 <= hits <= 100  # percentile bootstrap at n = 20 covers a little under 95 %


def test_paired_difference_sees_what_unpaired_cannot():
    rng = np.random.default_rng(1)
    base = rng.normal(0.0, 1.0, 12)  # large seed-to-seed spread, shared by both arms
    x, y = base + 0.1, base
    assert difference_interval(x, y, paired=True).verdict() == "held"
    # negative control: the same numbers treated as independent groups are inconclusive
    assert difference_interval(x, y, paired=False).verdict() == "inconclusive"
    assert difference_interval(y, x, paired=True).verdict() == "failed"


def test_slope_of_a_falling_trend():
    groups = {w: [1.0 / math.log2(w) + 0.01 * s for s in range(4)] for w in (16, 64, 256, 1024)}
    iv = slope_interval(groups, log2_x=True)
    assert iv.high < 0 and (-iv).verdict() == "held"
    flat = {w: [0.1, 0.3, 0.2, 0.25] for w in (16, 64, 256)}
    assert (-slope_interval(flat, log2_x=True)).verdict() == "inconclusive"


def test_verdicts_and_their_edge_cases():
    assert Interval(0.2, 0.1, 0.3, 5).verdict() == "held"
    assert Interval(-0.2, -0.3, -0.1, 5).verdict() == "failed"
    assert Interval(0.1, -0.1, 0.3, 5).verdict() == "inconclusive"
    assert Interval(math.nan, math.nan, math.nan, 5).verdict() == "inconclusive"
    one = mean_interval([0.4])
    assert (one.low, one.high, one.n) == (0.4, 0.4, 1) and "no interval" in one.note
    assert combine_verdicts(["held", "held"]) == "held"
    assert combine_verdicts(["held", "inconclusive"]) == "inconclusive"
    assert combine_verdicts(["inconclusive", "failed"]) == "failed"
    assert combine_verdicts([]) == "inconclusive"
    with pytest.raises(RunnerError, match="unknown verdicts"):
        combine_verdicts(["yes"])
    with pytest.raises(RunnerError, match="no values"):
        mean_interval([])
    with pytest.raises(RunnerError, match="two x values"):
        slope_interval({1: [0.1, 0.2]})


def test_rank_correlation_interval_agrees_with_scipy_and_sees_no_trend_in_noise():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    x = rng.normal(size=30)
    y = -x + rng.normal(0.0, 0.5, 30)
    iv = correlation_interval(x, y, n_resamples=2000)
    assert iv.estimate == pytest.approx(spearmanr(x, y).statistic)
    assert iv.high < -0.3 and (-iv).shift(-0.3).verdict() == "held"
    # negative control: independent noise gives an interval around 0
    noise = correlation_interval(x, rng.normal(size=30), n_resamples=2000)
    assert noise.low < 0 < noise.high and (-noise).shift(-0.3).verdict() != "held"
    # many tied scores (as E3's unidentifiable runs, all at 0): resamples with every score tied
    # count as ρ = 0 and the interval stays finite
    tied = correlation_interval(
        [0.0] * 10 + [0.9] * 3,
        [1.0 + 0.01 * i for i in range(10)] + [0.05, 0.06, 0.04],
        n_resamples=4000,
    )
    assert math.isfinite(tied.low) and math.isfinite(tied.high) and tied.estimate < -0.3
    with pytest.raises(RunnerError, match="pairs"):
        correlation_interval([1.0, 2.0], [1.0])


def test_proportion_interval_is_exact_and_never_degenerate():
    iv = proportion_interval(27, 30)
    assert iv.estimate == pytest.approx(0.9) and iv.low < 0.9 < iv.high
    assert iv.shift(-0.9).verdict() == "inconclusive"  # 27 of 30 cannot show a rate above 0.9
    all_ok = proportion_interval(100, 100)
    assert all_ok.high == 1.0 and 0.96 < all_ok.low < 0.975  # Clopper-Pearson: 0.9638
    assert all_ok.shift(-0.9).verdict() == "held"
    assert proportion_interval(50, 100).shift(-0.9).verdict() == "failed"
    with pytest.raises(RunnerError, match="successes"):
        proportion_interval(5, 3)
