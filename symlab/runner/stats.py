"""Confidence intervals over seeds, and the verdict of a claim that rests on them.

An experiment's claim ("alignment halves the barrier", "the barrier falls with width") is
decided from the jobs of a sweep, one number per seed. symlab states the test instead of
comparing two means: every claim is written as one or more quantities that must be
**positive** (a difference such as ``0.5·naive − aligned``, or minus a slope), each with a
*percentile bootstrap* interval over seeds (Efron and Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13; computed by :func:`scipy.stats.bootstrap` with a seeded generator, so
the same records give the same interval). The verdict is

* ``"held"`` — every interval lies above 0;
* ``"failed"`` — some interval lies below 0 (the data contradict the claim);
* ``"inconclusive"`` — otherwise (an interval contains 0: more seeds are needed).

Requiring *every* interval of a conjunction to clear 0 at level 95 % is an intersection–union
test, so the conjunction itself is tested at 95 % with no multiplicity correction (Berger and
Hsu, Statistical Science 1996). With one seed there is no interval: the "interval" is the point
estimate itself and :attr:`Interval.note` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .experiment import RunnerError

__all__ = [
    "Interval",
    "combine_verdicts",
    "correlation_interval",
    "difference_interval",
    "mean_interval",
    "proportion_interval",
    "slope_interval",
]

CONFIDENCE = 0.95
N_RESAMPLES = 9999
VERDICTS = ("held", "inconclusive", "failed")


@dataclass(frozen=True)
class Interval:
    """A statistic over seeds with its bootstrap confidence interval.

    Attributes:
        estimate: the statistic on the data as observed.
        low, high: the interval's ends (equal to ``estimate`` when there is no interval).
        n: the number of seeds (the smallest group's, for several groups).
        confidence: the interval's level (0.95).
        method: how it was computed, in words.

    >>> iv = mean_interval([0.2, 0.3, 0.25, 0.35])
    >>> iv.low <= iv.estimate <= iv.high, iv.verdict(), iv.n
    (True, 'held', 4)
    >>> mean_interval([-0.1, 0.3, 0.2]).verdict()  # the interval contains 0
    'inconclusive'
    """

    estimate: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE
    method: str = "percentile bootstrap over seeds"

    @property
    def note(self) -> str:
        """Why there is no interval, or ``""``."""
        return "" if self.n >= 2 else "one seed: point estimate, no interval"

    def verdict(self) -> str:
        """``"held"`` if the interval lies above 0, ``"failed"`` if below, else
        ``"inconclusive"`` (a NaN estimate is inconclusive)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "inconclusive"
        if self.low > 0:
            return "held"
        if self.high < 0:
            return "failed"
        return "inconclusive"

    def __neg__(self) -> Interval:
        """The interval of minus the statistic (to state "falls" as "−slope > 0")."""
        return Interval(-self.estimate, -self.high, -self.low, self.n, self.confidence, self.method)

    def shift(self, offset: float) -> Interval:
        """The interval of the statistic plus ``offset`` (to state "ρ < −0.3" as
        "−0.3 − ρ > 0": ``(-iv).shift(-0.3)``).

        >>> Interval(0.5, 0.4, 0.6, 10).shift(-0.45).verdict()
        'inconclusive'
        """
        return Interval(
            self.estimate + offset,
            self.low + offset,
            self.high + offset,
            self.n,
            self.confidence,
            self.method,
        )

    def as_dict(self) -> dict[str, Any]:
        """The interval as plain numbers (for JSON records and summaries)."""
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        """``estimate [low, high] (n = …)``; with one seed, the estimate and ``n = 1``."""
        if self.n < 2:
            return f"{self.estimate:.{digits}f} (n = 1, no interval)"
        return (
            f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] "
            f"(n = {self.n})"
        )


def _clean(values: Iterable[float], what: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.size == 0:
        raise RunnerError(f"{what}: no values to compute an interval from")
    return arr


def _bootstrap(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    paired: bool,
    seed: int,
    confidence: float,
    n_resamples: int,
    method: str,
) -> Interval:
    from scipy.stats import bootstrap

    estimate = float(statistic(*samples, axis=-1))
    n = min(len(s) for s in samples)
    if n < 2 or not math.isfinite(estimate):
        return Interval(estimate, estimate, estimate, n, confidence, method)
    res = bootstrap(
        tuple(samples),
        statistic,
        n_resamples=n_resamples,
        paired=paired,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high), n, confidence, method)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def mean_interval(
    values: Iterable[float],
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """The mean of ``values`` (one per seed) with its percentile bootstrap interval.

    >>> iv = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> iv.estimate, iv.low >= 1.0, iv.high <= 5.0
    (3.0, True, True)
    >>> mean_interval([0.5]).text()
    '0.500 (n = 1, no interval)'
    """
    x = _clean(values, "mean_interval")
    return _bootstrap(
        [x],
        _mean,
        paired=False,
        seed=seed,
        confidence=confidence,
        n_resamples=n_resamples,
        method="percentile bootstrap of the mean over seeds",
    )


def difference_interval(
    x: Iterable[float],
    y: Iterable[float],
    *,
    paired: bool,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """``mean(x) − mean(y)`` with its percentile bootstrap interval.

    ``paired=True``: ``x[i]`` and ``y[i]`` come from the same seed (the same job, or jobs that
    share their seed's models) and seeds are resampled as units; ``paired=False``: the two
    groups are independent and each is resampled on its own.

    >>> naive, aligned = [1.1, 0.9, 1.3, 1.0], [0.10, 0.20, 0.05, 0.12]
    >>> difference_interval([0.5 * v for v in naive], aligned, paired=True).verdict()
    'held'
    >>> difference_interval([1.0, 2.0], [1.0, 2.0, 3.0], paired=True)
    Traceback (most recent call last):
    ...
    symlab.runner.experiment.RunnerError: paired samples need equal lengths, got 2 and 3
    """
    a, b = _clean(x, "difference_interval"), _clean(y, "difference_interval")
    if paired:
        if len(a) != len(b):
            raise RunnerError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
        return _bootstrap(
            [a - b],
            _mean,
            paired=False,
            seed=seed,
            confidence=confidence,
            n_resamples=n_resamples,
            method="percentile bootstrap of the paired mean difference over seeds",
        )

    def diff(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(u, axis=axis) - np.mean(v, axis=axis)

    return _bootstrap(
        [a, b],
        diff,
        paired=False,
        seed=seed,
        confidence=confidence,
        n_resamples=n_resamples,
        method="percentile bootstrap of the difference of means (groups resampled separately)",
    )


def slope_interval(
    groups: Mapping[float, Iterable[float]],
    *,
    log2_x: bool = False,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """The least-squares slope of the group means against ``x`` (``log2 x`` with ``log2_x``),
    with a stratified percentile bootstrap interval (seeds resampled within each group).

    ``groups`` maps each ``x`` (a width, a depth) to its values, one per seed. The slope is in
    units of the values per unit of ``x`` (per doubling with ``log2_x``).

    >>> groups = {32: [0.30, 0.28, 0.33], 128: [0.20, 0.22, 0.18], 512: [0.10, 0.12, 0.09]}
    >>> iv = slope_interval(groups, log2_x=True)
    >>> round(iv.estimate, 3), iv.high < 0
    (-0.05, True)
    """
    if len(groups) < 2:
        raise RunnerError(f"a slope needs at least two x values, got {len(groups)}")
    xs = np.asarray([math.log2(float(k)) if log2_x else float(k) for k in groups])
    xc = xs - xs.mean()
    samples = [_clean(v, f"slope_interval at x = {k}") for k, v in groups.items()]

    def slope(*s: np.ndarray, axis: int = -1) -> np.ndarray:
        means = np.stack([np.mean(v, axis=axis) for v in s], axis=-1)
        return (means * xc).sum(-1) / (xc**2).sum()

    what = "log2 x" if log2_x else "x"
    return _bootstrap(
        samples,
        slope,
        paired=False,
        seed=seed,
        confidence=confidence,
        n_resamples=n_resamples,
        method=f"stratified percentile bootstrap of the least-squares slope of means vs {what}",
    )


def correlation_interval(
    x: Iterable[float],
    y: Iterable[float],
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
) -> Interval:
    """Spearman's rank correlation of ``x`` and ``y`` (one pair per job) with a percentile
    bootstrap interval (jobs resampled as units, so each ``(x[i], y[i])`` stays together). A
    resample in which every ``x`` (or every ``y``) is tied counts as ρ = 0.

    To state "ρ < −0.3" as a positive quantity: ``(-iv).shift(-0.3)``.

    >>> score = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    >>> barrier = [0.01, 0.05, 0.04, 0.2, 0.3, 0.25, 0.5, 0.6]
    >>> iv = correlation_interval(score, barrier)
    >>> round(iv.estimate, 3), iv.high < 0
    (-0.952, True)
    """
    from scipy.stats import spearmanr

    a, b = _clean(x, "correlation_interval"), _clean(y, "correlation_interval")
    if len(a) != len(b):
        raise RunnerError(f"correlation needs pairs, got {len(a)} and {len(b)} values")

    def rho(u: np.ndarray, v: np.ndarray, axis: int = -1) -> np.ndarray:
        # Spearman's ρ is Pearson's r of the ranks; ties get average ranks (as spearmanr).
        from scipy.stats import rankdata

        ru, rv = rankdata(u, axis=axis), rankdata(v, axis=axis)
        ru = ru - ru.mean(axis=axis, keepdims=True)
        rv = rv - rv.mean(axis=axis, keepdims=True)
        den = np.sqrt((ru**2).sum(axis=axis) * (rv**2).sum(axis=axis))
        # A resample whose x (or y) values are all tied has no defined correlation; it counts
        # as ρ = 0 (no association seen), which can only widen the interval towards 0.
        safe = np.where(den > 0, den, 1.0)
        return np.where(den > 0, (ru * rv).sum(axis=axis) / safe, 0.0)

    if len(a) < 3:
        est = float(spearmanr(a, b).statistic) if len(a) > 1 else math.nan
        return Interval(est, est, est, len(a), confidence, "Spearman ρ (too few pairs)")
    return _bootstrap(
        [a, b],
        rho,
        paired=True,
        seed=seed,
        confidence=confidence,
        n_resamples=n_resamples,
        method="percentile bootstrap of Spearman's ρ over jobs (pairs resampled together)",
    )


def proportion_interval(successes: int, n: int, *, confidence: float = CONFIDENCE) -> Interval:
    """The fraction ``successes / n`` with its exact (Clopper–Pearson) binomial interval
    (Clopper and Pearson, Biometrika 1934; :meth:`scipy.stats.binomtest`). Unlike a bootstrap,
    it is not degenerate when every trial succeeds.

    >>> iv = proportion_interval(20, 20)
    >>> iv.estimate, round(iv.low, 3), iv.high
    (1.0, 0.832, 1.0)
    """
    from scipy.stats import binomtest

    if n < 1 or not 0 <= successes <= n:
        raise RunnerError(
            f"proportion_interval needs 0 <= successes <= n and n >= 1, got {successes} of {n}"
        )
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    return Interval(
        successes / n,
        float(ci.low),
        float(ci.high),
        n,
        confidence,
        "exact (Clopper-Pearson) binomial interval",
    )


def combine_verdicts(verdicts: Iterable[str]) -> str:
    """The verdict of a conjunction: ``"failed"`` if any part failed, ``"held"`` if all held,
    else ``"inconclusive"``.

    >>> combine_verdicts(["held", "held"]), combine_verdicts(["held", "inconclusive"])
    ('held', 'inconclusive')
    >>> combine_verdicts(["held", "failed", "inconclusive"])
    'failed'
    """
    vs = list(verdicts)
    unknown = sorted(set(vs) - set(VERDICTS))
    if unknown:
        raise RunnerError(f"unknown verdicts {unknown}; expected {VERDICTS}")
    if not vs:
        return "inconclusive"
    if "failed" in vs:
        return "failed"
    return "held" if all(v == "held" for v in vs) else "inconclusive"
