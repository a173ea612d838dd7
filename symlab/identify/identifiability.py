"""Neuron identifiability across training runs, and the alignment-free merging prediction.

Bürgin, Herbst, Lin, Jegelka (ICML 2026): a layer is identifiable when, comparing two
independently trained runs, the activation-matching objective (mean correlation of matched
units, Git Re-Basin's activation matching) is (close to) optimal at the *identity*: the runs'
units already correspond, so the runs can be merged without alignment. Per layer (per space of
units, including asymmetric layers whose structural permutations are gone) this reports the
objective at the identity, at the optimal assignment and, in expectation, at a uniformly random
permutation (the mean of all entries of the correlation matrix, exactly), and the score

    score = clip((identity − random) / (optimal − random), 0, 1)

which is 1 when the identity is optimal and 0 when it is no better than random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from symlab.align.activation_matching import correlation_matrices
from symlab.align.weight_matching import solve_assignment
from symlab.errors import DataError
from symlab.symmetry.group import SymmetryGroup

__all__ = [
    "IdentifiabilityReport",
    "LayerIdentifiability",
    "identifiability",
    "pairwise_identifiability",
]


@dataclass(frozen=True)
class LayerIdentifiability:
    """One space of units: objectives, score, and the optimal matching of B's units to A's.

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 8, 2], seed=0)
    >>> layer = identifiability(a, a, torch.randn(64, 4)).layers["layers.0.linear"]
    >>> layer.width, round(layer.score, 6), layer.permutation.tolist() == list(range(8))
    (8, 1.0, True)
    """

    space: str
    width: int
    identity: float
    optimal: float
    random: float
    random_std: float
    score: float
    self_match_fraction: float
    permutation: torch.Tensor  # perm[i] = unit of B matched to unit i of A


@dataclass(frozen=True)
class IdentifiabilityReport:
    """Per-layer identifiability of two runs (see the module docstring).

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> report = identifiability(a, b, torch.randn(64, 4))
    >>> list(report.layers), report.score < 0.9  # independent inits: units do not correspond
    (['layers.0.linear'], True)
    """

    layers: dict[str, LayerIdentifiability]
    kind: str = "correlation"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """The least identifiable layer's score (merging needs every layer)."""
        return min((v.score for v in self.layers.values()), default=1.0)

    def __str__(self) -> str:
        head = f"{'layer':<28} {'width':>5} {'identity':>9} {'optimal':>8} {'random':>7} "
        lines = [head + f"{'score':>6} {'self':>6}"]
        for v in self.layers.values():
            lines.append(
                f"{v.space:<28} {v.width:>5} {v.identity:>9.3f} {v.optimal:>8.3f} "
                f"{v.random:>7.3f} {v.score:>6.2f} {v.self_match_fraction:>6.2f}"
            )
        return "\n".join(lines)


def _layer(space: str, c: np.ndarray, blocks: Any) -> LayerIdentifiability:
    n = c.shape[0]
    perm = solve_assignment(c, None)
    identity = float(np.trace(c)) / n
    optimal = float(c[np.arange(n), perm.numpy()].sum()) / n
    random = float(c.mean())
    # variance of the mean matched value under a uniformly random permutation
    random_std = float(np.sqrt(max(((c - c.mean()) ** 2).mean() / max(n - 1, 1), 0.0)))
    gap = optimal - random
    score = 1.0 if gap <= 1e-12 else float(np.clip((identity - random) / gap, 0.0, 1.0))
    self_frac = float((c.argmax(1) == np.arange(n)).mean())
    return LayerIdentifiability(space, n, identity, optimal, random, random_std, score,
                                self_frac, perm)  # fmt: skip


def identifiability(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    G: SymmetryGroup | None = None,
    *,
    example_input: torch.Tensor | None = None,
    kind: str = "correlation",
    split: str = "test",
    batch_size: int = 1024,
) -> IdentifiabilityReport:
    """Per-layer identifiability of two runs of one architecture on ``data`` (Bürgin et al.).

    ``data`` is a :class:`symlab.data.Dataset` (its ``split`` is used), an input tensor, or
    ``(x, y)``. ``G`` defaults to ``symlab.symmetries(model_a, example_input)``.

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 8, 2], seed=0); b = sl.nn.MLP([4, 8, 2], seed=0)
    >>> rep = identifiability(a, b, torch.randn(64, 4))
    >>> round(rep.score, 6)  # the same run twice: every unit is itself
    1.0
    """
    from symlab.api import symmetries

    if G is None:
        G = symmetries(model_a, example_input)
    spaces = [f for f in G.unit_spaces() if int(f.size) > 1]
    if not spaces:
        raise DataError("the model has no hidden units to compare")
    stats, where = correlation_matrices(model_a, model_b, data, G, spaces, kind=kind,
                                        batch_size=batch_size, split=split)  # fmt: skip
    layers = {}
    for f in spaces:
        moms = stats[f.name]
        if moms[0].count < 2:
            raise DataError(f"identifiability needs at least 2 samples; got {moms[0].count}")
        c = (sum(m.matrix(kind)[0] for m in moms) / len(moms)).numpy()
        layers[f.space] = _layer(f.space, c, f.blocks)
    return IdentifiabilityReport(layers, kind, {"tensors": where})


def pairwise_identifiability(
    models: list[nn.Module], data: Any, G: SymmetryGroup | None = None, **kwargs: Any
) -> dict[str, np.ndarray]:
    """Scores of every pair of runs, per layer: ``{space: (N, N) matrix}`` (diagonal 1).

    >>> import symlab as sl
    >>> runs = [sl.nn.MLP([4, 8, 2], seed=s) for s in (0, 1, 0)]
    >>> m = pairwise_identifiability(runs, torch.randn(64, 4))["layers.0.linear"]
    >>> m.shape, float(m[0, 0]), round(float(m[0, 2]), 6)  # runs 0 and 2 are the same
    ((3, 3), 1.0, 1.0)
    """
    from symlab.api import symmetries

    if len(models) < 2:
        raise DataError("pairwise identifiability needs at least two models")
    G = G or symmetries(models[0], kwargs.pop("example_input", None))
    n = len(models)
    out: dict[str, np.ndarray] = {}
    for i in range(n):
        for j in range(i + 1, n):
            rep = identifiability(models[i], models[j], data, G, **kwargs)
            for space, v in rep.layers.items():
                m = out.setdefault(space, np.eye(n))
                m[i, j] = m[j, i] = v.score
    return out
