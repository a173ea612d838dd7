"""Loss over the simplex spanned by three models: weak vs strong linear connectivity.

Follows Sharma, Kwok, Denton, Roy, Rolnick, Dziugaite, "Simultaneous Linear Connectivity of
Neural Networks Modulo Permutation" (2024): three networks aligned *together* (one
permutation per network, e.g. :func:`symlab.connect.merge`) are strongly linearly connected
when every convex combination ``Σ_i w_i θ_i`` has low loss, not only the three edges. symlab
evaluates the loss on the grid ``w = (i, j, k) / resolution``, ``i + j + k = resolution``
(``(r + 1)(r + 2) / 2`` points, vertices and edges included) and reports barriers over it:

- ``"loss"``: ``max_w L(w) − mean_i L(θ_i)`` (Git Re-Basin's barrier over the simplex);
- ``"weighted"``: ``max_w [L(w) − Σ_i w_i L(θ_i)]`` (Entezari et al.'s, over the simplex);
- ``"error"``: the ``"loss"`` barrier on the error rate.

BatchNorm statistics are recomputed at every interior point (on by default for BN models).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from symlab.align.data import iter_batches
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.connect.interpolate import _loss_terms, check_same_architecture
from symlab.connect.merge import average_state_dicts
from symlab.connect.path_eval import averaged_over, counted_rows
from symlab.errors import DataError
from symlab.stateless import call_with_state

__all__ = ["Simplex", "simplex", "simplex_grid"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def simplex_grid(resolution: int) -> torch.Tensor:
    """Barycentric weights ``(i, j, k) / resolution`` with ``i + j + k = resolution``.

    >>> simplex_grid(2).tolist()  # doctest: +NORMALIZE_WHITESPACE
    [[0.0, 0.0, 1.0], [0.0, 0.5, 0.5], [0.0, 1.0, 0.0],
     [0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
    """
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    pts = [
        (i, j, resolution - i - j) for i in range(resolution + 1) for j in range(resolution + 1 - i)
    ]
    return torch.tensor(pts, dtype=torch.float64) / resolution


@dataclass(frozen=True, eq=False)
class Simplex:
    """Loss (and accuracy) on a barycentric grid over three models.

    Attributes:
        weights: ``[K, 3]`` barycentric weights; ``loss``, ``accuracy``: ``[K]``.

    >>> import symlab as sl
    >>> models = [sl.nn.MLP([3, 4, 2], seed=s) for s in range(3)]
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> grid = simplex(models, (x, y), resolution=2)
    >>> tuple(grid.weights.shape), tuple(grid.loss.shape), tuple(grid.accuracy.shape)
    ((6, 3), (6,), (6,))
    """

    weights: torch.Tensor
    loss: torch.Tensor
    accuracy: torch.Tensor | None = None
    bn_reset: bool = False

    def _vertices(self, values: torch.Tensor) -> torch.Tensor:
        idx = [int(torch.nonzero(self.weights[:, i] == 1.0)[0]) for i in range(3)]
        return values[idx]

    def barrier(self, kind: str = "loss") -> float:
        """``"loss"``, ``"weighted"`` or ``"error"`` (see the module docstring); non-finite
        interior losses count as an infinite barrier."""
        if kind == "error":
            if self.accuracy is None:
                raise DataError("this simplex has no accuracies (a regression loss)")
            values = 1.0 - self.accuracy
        elif kind in ("loss", "weighted"):
            values = self.loss
        else:
            raise ValueError(f"unknown simplex barrier {kind!r}; use 'loss', 'weighted', 'error'")
        v = torch.where(torch.isfinite(values), values, torch.inf)
        ends = self._vertices(v)
        if not bool(torch.isfinite(ends).all()):
            return float("nan")
        base = self.weights @ ends if kind == "weighted" else ends.mean()
        return float((v - base).max())

    def plot(self, ax: Any = None, metric: str = "loss", **kwargs: Any) -> Any:
        """A filled ternary contour of ``metric`` (``"loss"`` or ``"accuracy"``)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4, 3.5))
        vals = self.loss if metric == "loss" else self.accuracy
        if vals is None:
            raise DataError(f"this simplex has no {metric} values")
        w = self.weights
        x, y = (w[:, 1] + 0.5 * w[:, 2]).numpy(), (w[:, 2] * 3**0.5 / 2).numpy()
        art = ax.tricontourf(x, y, vals.numpy(), levels=kwargs.pop("levels", 20), **kwargs)
        ax.figure.colorbar(art, ax=ax, label=metric)
        for (px, py), name in zip([(0, 0), (1, 0), (0.5, 3**0.5 / 2)], "ABC", strict=True):
            ax.annotate(name, (px, py), ha="center", va="top" if py == 0 else "bottom")
        ax.set_aspect("equal")
        ax.axis("off")
        return ax


def simplex(
    models: Sequence[nn.Module],
    data: Any,
    *,
    resolution: int = 10,
    loss: str | LossFn | None = None,
    split: str = "test",
    bn_reset: bool | None = None,
    reset_data: Any = None,
    batch_size: int | None = None,
) -> Simplex:
    """Evaluate ``Σ_i w_i θ_i`` on the barycentric grid of three (aligned) models.

    Args:
        models: three models of one architecture, already aligned to each other (e.g.
            ``merge(models, G).alignments``); this function does not align.
        data: a :class:`symlab.data.Dataset` (evaluated on ``split``), ``(x, y)`` or batches.
        resolution: grid steps per edge.
        bn_reset: recompute BatchNorm statistics at interior points (default: iff the models
            have BatchNorm) on ``reset_data`` (default: ``data``'s train split).

    Returns:
        a :class:`Simplex`.

    >>> import symlab as sl
    >>> models = [sl.nn.MLP([3, 4, 2], seed=s) for s in range(3)]
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> grid = simplex(models, (x, y), resolution=2)
    >>> tuple(grid.weights.shape), bool(torch.isfinite(grid.loss).all())
    ((6, 3), True)
    """
    if len(models) != 3:
        raise ValueError(f"simplex needs exactly three models, got {len(models)}")
    sds = [m.state_dict() for m in models]
    for sd in sds[1:]:
        check_same_architecture(sds[0], sd)
    weights = simplex_grid(resolution)
    bn = has_batchnorm(models[0])
    do_reset = bn if bn_reset is None else bool(bn_reset)
    net = copy.deepcopy(models[0]).eval()
    losses = torch.zeros(len(weights), dtype=torch.float64)
    correct: torch.Tensor | None = torch.zeros(len(weights), dtype=torch.float64)
    for i, w in enumerate(weights.tolist()):
        state = average_state_dicts(sds, w)
        if do_reset and bn and max(w) < 1.0:
            net.load_state_dict(state)
            reset_bn_stats(net, data if reset_data is None else reset_data)
            state = net.state_dict()
        rows, counted = 0, 0.0
        with torch.no_grad():
            for x, y in iter_batches(data, batch_size, split):
                if y is None:
                    raise DataError("simplex needs targets: pass (x, y) or a Dataset")
                name = loss or ("mse" if y.is_floating_point() else "cross_entropy")
                out = call_with_state(net, state, (x.clone(),))  # it may write into x
                sums, corr = _loss_terms(out[None], y, name)
                losses[i] += sums[0]
                if corr is None:
                    correct = None
                elif correct is not None:
                    correct[i] += corr[0]
                rows += len(x)
                counted += counted_rows(y, name)
        counted = averaged_over("simplex", rows, counted)
        losses[i] /= counted
        if correct is not None:
            correct[i] /= counted
    return Simplex(weights, losses, correct, do_reset and bn)
