"""The alignment-free merging prediction and its check against a measured barrier.

An *empirical predictor*, not a theorem (Bürgin et al., ICML 2026): when every layer of two runs
is identifiable (the identity is close to the optimal unit matching), unaligned linear
interpolation between them is predicted to be low-loss; when some layer is not, a barrier is
predicted. :func:`test_prediction` measures the real unaligned barrier with
:func:`symlab.connect.interpolate` and reports whether prediction and measurement agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from symlab.identify.identifiability import IdentifiabilityReport, identifiability

__all__ = ["Prediction", "PredictionCheck", "predict_alignment_free", "test_prediction"]


@dataclass(frozen=True)
class Prediction:
    """Whether unaligned interpolation should be low-loss, and why.

    >>> import symlab as sl, torch
    >>> a = sl.nn.MLP([4, 8, 2], seed=0)
    >>> p = predict_alignment_free(sl.identify.identifiability(a, a, torch.randn(64, 4)))
    >>> p.low_loss, p.identifiable, p.not_identifiable
    (True, ('layers.0.linear',), ())
    """

    low_loss: bool
    identifiable: tuple[str, ...]
    not_identifiable: tuple[str, ...]
    threshold: float
    reason: str


def predict_alignment_free(report: IdentifiabilityReport, threshold: float = 0.9) -> Prediction:
    """Predict low-loss unaligned interpolation iff every layer's score is ≥ ``threshold``.

    >>> import symlab as sl, torch
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> report = sl.identify.identifiability(a, b, torch.randn(64, 4))
    >>> p = predict_alignment_free(report, threshold=0.9)
    >>> p.low_loss, p.not_identifiable
    (False, ('layers.0.linear',))
    """
    ok = tuple(k for k, v in report.layers.items() if v.score >= threshold)
    bad = tuple(k for k, v in report.layers.items() if v.score < threshold)
    if bad:
        worst = min(report.layers.values(), key=lambda v: v.score)
        reason = (
            f"{len(bad)} of {len(report.layers)} layers are not identifiable (score < "
            f"{threshold}); least: {worst.space} with score {worst.score:.2f} — its units must "
            "be aligned before merging, so a barrier is expected"
        )
    else:
        reason = (
            f"all {len(ok)} layers are identifiable (scores ≥ {threshold}): the runs' units "
            "already correspond, so the unaligned path is expected to stay low-loss"
        )
    return Prediction(not bad, ok, bad, threshold, reason)


@dataclass(frozen=True)
class PredictionCheck:
    """A prediction next to the measured unaligned barrier.

    >>> import symlab as sl, torch
    >>> a = sl.nn.MLP([4, 8, 2], seed=0)
    >>> check = test_prediction(a, a, (torch.randn(64, 4), torch.randint(0, 2, (64,))))
    >>> check.prediction.low_loss, check.low_loss_measured, check.agree, check.barrier < 1e-6
    (True, True, True, True)
    """

    prediction: Prediction
    barrier: float
    barrier_kind: str
    low_loss_measured: bool
    tolerance: float
    curve: Any

    @property
    def agree(self) -> bool:
        return self.prediction.low_loss == self.low_loss_measured

    def __str__(self) -> str:
        verdict = "agrees" if self.agree else "DISAGREES"
        return (
            f"predicted {'low-loss' if self.prediction.low_loss else 'a barrier'}; measured "
            f"{self.barrier_kind} barrier {self.barrier:.4g} (low-loss means ≤ {self.tolerance}) "
            f"— prediction {verdict}. {self.prediction.reason}"
        )


def test_prediction(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    *,
    report: IdentifiabilityReport | None = None,
    threshold: float = 0.9,
    barrier_kind: str = "loss",
    tolerance: float = 0.1,
    n_alphas: int = 21,
    **kwargs: Any,
) -> PredictionCheck:
    """Predict from identifiability, then measure the unaligned barrier (``tolerance`` on the
    chosen barrier decides "low-loss"; Bürgin et al. use 21 interpolation points).

    >>> import symlab as sl, torch
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> check = test_prediction(a, b, (torch.randn(64, 4), torch.randint(0, 2, (64,))))
    >>> check.prediction.low_loss, check.barrier_kind, len(check.curve.alphas)
    (False, 'loss', 21)
    """
    from symlab.connect import interpolate

    report = report or identifiability(model_a, model_b, data)
    pred = predict_alignment_free(report, threshold)
    curve = interpolate(model_a, model_b, data, n_alphas=n_alphas, **kwargs)
    b = float(curve.barrier(barrier_kind))
    return PredictionCheck(pred, b, barrier_kind, b <= tolerance, tolerance, curve)


test_prediction.__test__ = False  # type: ignore[attr-defined]  (not a pytest test)
