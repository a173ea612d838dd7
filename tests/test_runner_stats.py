"""Confidence intervals over seeds and claim verdicts (symlab.runner.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symlab.runner import (
    Interval,
    RunnerError,
    combine_verdicts,
    difference_interval,
    mean_interval,
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
