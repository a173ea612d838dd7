"""Barrier definitions along a path, each named after the paper it follows
(docs/concepts/connectivity.md), and the check that both endpoints of a path are trained models.

All barriers take the evaluated curve (``alphas`` from 0 to 1 with the endpoints included) and
return a float. Non-finite values inside the path count as an infinite barrier; a non-finite
endpoint makes the barrier undefined (``nan``). A barrier between two models that did not
train says nothing about connectivity: :func:`check_endpoints` decides, with stated thresholds,
whether both endpoints trained, so experiments report such pairs instead of averaging them in.

>>> import torch
>>> a = torch.tensor([0.0, 0.5, 1.0])
>>> loss_barrier(a, torch.tensor([1.0, 3.0, 2.0]))
1.5
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from symlab.errors import ArgumentError, DataError

__all__ = [
    "BARRIERS",
    "EndpointCheck",
    "barrier",
    "check_endpoints",
    "error_barrier",
    "loss_barrier",
    "max_endpoint_barrier",
    "relative_accuracy_drop",
    "weighted_barrier",
]


def _prep(alphas: torch.Tensor, values: torch.Tensor, what: str) -> tuple[np.ndarray, ...]:
    a = np.asarray(torch.as_tensor(alphas, dtype=torch.float64))
    v = np.asarray(torch.as_tensor(values, dtype=torch.float64))
    if a.ndim != 1 or a.shape != v.shape:
        raise DataError(f"{what}: need matching 1-d alphas and values, got {a.shape}, {v.shape}")
    if len(a) < 2:
        raise DataError(
            f"{what}: a barrier compares the path with its two ends; got {len(a)} point(s) "
            "(evaluate at least α = 0 and α = 1, e.g. n_alphas >= 2)"
        )
    i0, i1 = np.flatnonzero(a == 0.0), np.flatnonzero(a == 1.0)
    if not len(i0) or not len(i1):
        raise DataError(f"{what} needs the endpoints alpha = 0 and alpha = 1 on the curve")
    v = np.where(np.isfinite(v), v, np.inf)  # NaN along the path: as bad as it gets
    return a, v, v[i0[0]], v[i1[0]]


def _finish(x: float, v0: float, v1: float) -> float:
    return float(x) if np.isfinite(v0) and np.isfinite(v1) else float("nan")


def loss_barrier(alphas: torch.Tensor, loss: torch.Tensor) -> float:
    """``max_α L(α) − ½ (L(0) + L(1))`` (Git Re-Basin, Ainsworth et al. 2023; Frankle 2020).

    >>> alphas = torch.linspace(0, 1, 5)
    >>> loss_barrier(alphas, torch.tensor([1.0, 2.0, 1.0, 0.5, 0.0]))
    1.5
    """
    _, v, v0, v1 = _prep(alphas, loss, "loss barrier")
    with np.errstate(invalid="ignore"):
        return _finish(v.max() - 0.5 * (v0 + v1), v0, v1)


def max_endpoint_barrier(alphas: torch.Tensor, loss: torch.Tensor) -> float:
    """``max_α L(α) − max(L(0), L(1))`` (Bürgin, Herbst, Lin, Jegelka, ICML 2026): the loss
    the path rises above the worse endpoint (never more than the ``"loss"`` barrier).

    >>> alphas = torch.linspace(0, 1, 5)
    >>> max_endpoint_barrier(alphas, torch.tensor([1.0, 2.0, 1.0, 0.5, 0.0]))
    1.0
    """
    _, v, v0, v1 = _prep(alphas, loss, "max-endpoint barrier")
    with np.errstate(invalid="ignore"):
        return _finish(v.max() - max(v0, v1), v0, v1)


def weighted_barrier(alphas: torch.Tensor, loss: torch.Tensor) -> float:
    """``max_α L(α) − [(1 − α) L(0) + α L(1)]`` (Entezari et al., ICLR 2022).

    >>> alphas = torch.linspace(0, 1, 5)
    >>> weighted_barrier(alphas, torch.tensor([1.0, 2.0, 1.0, 0.5, 0.0]))
    1.25
    """
    a, v, v0, v1 = _prep(alphas, loss, "weighted barrier")
    with np.errstate(invalid="ignore"):
        return _finish((v - ((1 - a) * v0 + a * v1)).max(), v0, v1)


def error_barrier(alphas: torch.Tensor, accuracy: torch.Tensor) -> float:
    """``max_α err(α) − ½ (err(0) + err(1))`` on the error rate ``1 − accuracy``, as a fraction
    (Frankle et al., ICML 2020, "instability"; stable when below 0.02).

    >>> alphas = torch.linspace(0, 1, 5)
    >>> round(error_barrier(alphas, torch.tensor([0.9, 0.8, 0.5, 0.7, 0.8])), 4)
    0.35
    """
    acc = torch.as_tensor(accuracy, dtype=torch.float64)
    return loss_barrier(alphas, 1.0 - acc)


def relative_accuracy_drop(alphas: torch.Tensor, accuracy: torch.Tensor) -> float:
    """``(min_α acc(α) − max(acc(0), acc(1))) / max(acc(0), acc(1)) · 100``, in percent;
    negative when the path loses accuracy (Bürgin et al. 2026).

    >>> alphas = torch.linspace(0, 1, 5)
    >>> round(relative_accuracy_drop(alphas, torch.tensor([0.9, 0.8, 0.5, 0.7, 0.8])), 1)
    -44.4
    """
    _, v, v0, v1 = _prep(alphas, -torch.as_tensor(accuracy, dtype=torch.float64), "accuracy")
    best = max(-v0, -v1)
    if best == 0 or not np.isfinite(best):
        return float("nan")
    return _finish((-v.max() - best) / best * 100.0, v0, v1)


_ON_LOSS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "loss": loss_barrier,
    "weighted": weighted_barrier,
    "max_endpoint": max_endpoint_barrier,
}
_ON_ACCURACY: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "error": error_barrier,
    "relative_accuracy_drop": relative_accuracy_drop,
}
#: The barrier names :func:`barrier` and ``Curve.barrier`` accept.
BARRIERS: tuple[str, ...] = (*_ON_LOSS, *_ON_ACCURACY)


def barrier(
    kind: str,
    alphas: torch.Tensor,
    loss: torch.Tensor | None = None,
    accuracy: torch.Tensor | None = None,
) -> float:
    """The barrier named ``kind`` (one of :data:`BARRIERS`) of a curve.

    >>> alphas = torch.linspace(0, 1, 5)
    >>> barrier("loss", alphas, loss=torch.tensor([1.0, 2.0, 1.0, 0.5, 0.0]))
    1.5
    >>> round(barrier("error", alphas, accuracy=torch.tensor([0.9, 0.8, 0.5, 0.7, 0.8])), 4)
    0.35
    """
    if kind in _ON_LOSS:
        if loss is None:
            raise DataError(f"the {kind!r} barrier needs losses")
        return _ON_LOSS[kind](alphas, loss)
    if kind in _ON_ACCURACY:
        if accuracy is None:
            raise DataError(
                f"the {kind!r} barrier needs accuracies, which this curve has not "
                "(a regression loss); use 'loss' or 'weighted'"
            )
        return _ON_ACCURACY[kind](alphas, accuracy)
    raise ArgumentError(f"unknown barrier {kind!r}; choose one of {list(BARRIERS)}")


#: Default thresholds of :func:`check_endpoints`: regression R² on the evaluated split, and the
#: fraction of the way from chance to perfect accuracy for classification.
MIN_R2 = 0.9
MIN_ACCURACY_GAIN = 0.3


@dataclass(frozen=True)
class EndpointCheck:
    """Whether both endpoints of a path trained (see :func:`check_endpoints`).

    Attributes:
        trained: both endpoints pass the threshold.
        endpoints: per endpoint (A, B), whether it passes.
        values: per endpoint, the value compared (R² or accuracy).
        threshold: the value each had to reach; measure: ``"R²"``, ``"accuracy"`` or
            ``"loss"`` (an explicit ``max_loss``).
        reason: one sentence for reports.

    >>> ends, losses = torch.tensor([0.0, 1.0]), torch.tensor([0.05, 0.5])
    >>> c = check_endpoints(ends, losses, target_variance=1.0)
    >>> c.trained, c.endpoints, c.reason
    (False, (True, False), 'endpoint B did not train: R² 0.5 < 0.9 (target variance 1)')
    """

    trained: bool
    endpoints: tuple[bool, bool]
    values: tuple[float, float]
    threshold: float
    measure: str
    reason: str


def _target_variance(data: Any, split: str) -> float:
    from symlab.align.data import split_tensors

    t = split_tensors(data, split)
    if t is None or t[1] is None:
        raise DataError(
            "check_endpoints needs the regression targets to judge the losses: pass data as a "
            "symlab Dataset or (x, y) tensors, or target_variance / max_loss"
        )
    y = t[1].double()
    return float(y.reshape(len(y), -1).var(0, unbiased=False).sum())


def check_endpoints(
    alphas: torch.Tensor,
    loss: torch.Tensor,
    accuracy: torch.Tensor | None = None,
    *,
    data: Any = None,
    split: str = "test",
    target_variance: float | None = None,
    max_loss: float | None = None,
    min_accuracy: float | None = None,
    num_classes: int | None = None,
) -> EndpointCheck:
    """Decide whether both endpoints of a path (``alphas`` 0 and 1) are trained models.

    Thresholds, stated: for a classifier (``accuracy`` given) each endpoint's accuracy must
    reach ``min_accuracy``, by default chance + 0.3 × (1 − chance) with chance = 1 / classes
    (``num_classes``, or the number of classes in ``data``'s targets); for a regression each
    endpoint's loss (mean squared error) must stay at or below ``max_loss``, by default
    ``(1 − 0.9) × Var(y)`` — an R² of at least 0.9 on the evaluated split (``target_variance``
    or ``data``'s ``split`` targets give ``Var(y)``).

    >>> alphas, acc = torch.linspace(0, 1, 3), torch.tensor([0.9, 0.5, 0.15])
    >>> check_endpoints(alphas, torch.ones(3), acc, num_classes=10).reason
    'endpoint B did not train: accuracy 0.15 < 0.37 (chance 0.1)'
    """
    a = torch.as_tensor(alphas, dtype=torch.float64)
    i0, i1 = torch.nonzero(a == 0.0).flatten(), torch.nonzero(a == 1.0).flatten()
    if not len(i0) or not len(i1):
        raise DataError("check_endpoints needs the endpoints alpha = 0 and alpha = 1")
    ends = (int(i0[0]), int(i1[0]))
    lv = torch.as_tensor(loss, dtype=torch.float64)
    if accuracy is not None:
        measure, vals = "accuracy", [float(torch.as_tensor(accuracy)[i]) for i in ends]
        note = ""
        if min_accuracy is None:
            if num_classes is None:
                from symlab.align.data import split_tensors

                t = None if data is None else split_tensors(data, split)
                if t is None or t[1] is None:
                    raise DataError("check_endpoints needs num_classes, data or min_accuracy "
                                    "to set the accuracy threshold")  # fmt: skip
                num_classes = int(t[1].max()) + 1
            chance = 1.0 / max(num_classes, 1)
            min_accuracy = chance + MIN_ACCURACY_GAIN * (1.0 - chance)
            note = f" (chance {chance:.3g})"
        threshold, higher = float(min_accuracy), True
    elif max_loss is None:
        var = target_variance if target_variance is not None else _target_variance(data, split)
        measure, threshold, higher = "R²", MIN_R2, True
        vals = [1.0 - float(lv[i]) / var if var > 0 else float("nan") for i in ends]
        note = f" (target variance {var:.3g})"
    else:
        measure, threshold, higher, note = "loss", float(max_loss), False, ""
        vals = [float(lv[i]) for i in ends]
    ok = [bool(np.isfinite(v) and (v >= threshold if higher else v <= threshold)) for v in vals]
    sign = "<" if higher else ">"
    bad = [f"endpoint {n} did not train: {measure} {v:.3g} {sign} {threshold:.3g}{note}"
           for n, v, o in zip("AB", vals, ok, strict=True) if not o]  # fmt: skip
    good = f"both endpoints trained ({measure} {'≥' if higher else '≤'} {threshold:.3g}{note})"
    return EndpointCheck(all(ok), (ok[0], ok[1]), (vals[0], vals[1]), threshold,
                         measure, "; ".join(bad) or good)  # fmt: skip
