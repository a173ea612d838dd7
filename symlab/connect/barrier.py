"""Barrier definitions along a path, each named after the paper it follows
(docs/concepts/connectivity.md).

All take the evaluated curve (``alphas`` from 0 to 1 with the endpoints included) and return a
float. Non-finite values inside the path count as an infinite barrier; a non-finite endpoint
makes the barrier undefined (``nan``).

>>> import torch
>>> a = torch.tensor([0.0, 0.5, 1.0])
>>> loss_barrier(a, torch.tensor([1.0, 3.0, 2.0]))
1.5
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from symlab.errors import DataError

__all__ = [
    "BARRIERS",
    "barrier",
    "error_barrier",
    "loss_barrier",
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
    raise ValueError(f"unknown barrier {kind!r}; choose one of {list(BARRIERS)}")
