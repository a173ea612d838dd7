"""Neuron identifiability across training runs: both measures, per layer.

Bürgin, Herbst, Lin, Jegelka (ICML 2026) define two measures, and symlab reports both:

- **function-class identifiability** (the paper's notion, :mod:`symlab.identify.cross_run`):
  after removing the structural gauges with the derived group, B's unit functions are placed in
  A's effective function classes; a unit is identifiable when every permutation that moves it
  costs more than the identity under the cross-run cost ``C^{AB}``. It sees positive scalings
  and sign flips as gauges (a rescaled copy *is* the same run) and cannot tell apart units that
  share one class (a standard layer: score 0, "degenerate");
- **activation-matching identifiability** (what the paper's code measures in practice): the
  activation-matching objective (mean correlation of matched units, Git Re-Basin's activation
  matching) at the *identity*, at the optimal assignment and, in expectation, at a uniformly
  random permutation (the mean of all entries of the correlation matrix, exactly), with

      score = clip((identity − random) / (optimal − random), 0, 1)

  1 when the identity is optimal and 0 when it is no better than random. It is blind to
  positive scaling and counts a tanh sign flip as a different unit: never use it alone to
  predict unaligned merging (:func:`symlab.identify.predict_alignment_free`).

Per layer (per space of units, including asymmetric layers whose structural permutations are
gone) the report holds the correlation numbers and a
:class:`~symlab.identify.cross_run.FunctionClassLayer` (layers that are not linear or
convolutional modules have only the correlation measure).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from symlab.align.activation_matching import correlation_matrices
from symlab.align.weight_matching import solve_assignment
from symlab.errors import DataError
from symlab.identify.cross_run import FunctionClassLayer, function_class_identifiability
from symlab.identify.layers import check_pair, data_inputs
from symlab.progress import progress as progress_items
from symlab.symmetry.group import SymmetryGroup

__all__ = [
    "IdentifiabilityReport",
    "LayerIdentifiability",
    "identifiability",
    "pairwise_identifiability",
]


@dataclass(frozen=True)
class LayerIdentifiability:
    """One space of units: the correlation measure (objectives, ``score``, the optimal matching
    of B's units to A's) and the function-class measure (``function_class``, None where the
    layer is not a linear or convolutional module).

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 8, 2], seed=0)
    >>> layer = identifiability(a, a, torch.randn(64, 4)).layers["layers.0.linear"]
    >>> layer.width, round(layer.score, 6), layer.permutation.tolist() == list(range(8))
    (8, 1.0, True)
    >>> layer.function_class.degenerate  # standard units: one shared class
    True
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
    function_class: FunctionClassLayer | None = None

    @property
    def correlation_score(self) -> float:
        """The activation-matching (correlation) score, the same as ``score``."""
        return self.score

    @property
    def function_class_score(self) -> float | None:
        """The function-class score (None where the layer has no function classes)."""
        return None if self.function_class is None else self.function_class.score


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
        """The least identifiable layer's correlation score (merging needs every layer)."""
        return min((v.score for v in self.layers.values()), default=1.0)

    @property
    def function_class_score(self) -> float | None:
        """The least function-class score over the layers that have one (None if none has)."""
        vals = [v.function_class.score for v in self.layers.values() if v.function_class]
        return min(vals) if vals else None

    def __str__(self) -> str:
        head = f"{'layer':<24} {'width':>5} {'corr: identity':>14} {'optimal':>8} {'random':>7} "
        lines = [head + f"{'score':>6} | {'function class: score':>21} {'class':>6} {'ν(U)':>6}"]
        for v in self.layers.values():
            fc = v.function_class
            tail = "-" if fc is None else (
                f"{fc.score:>21.2f} {fc.class_score:>6.2f} {fc.coherence:>6.2f}"
                + (" degenerate" if fc.degenerate else ""))  # fmt: skip
            lines.append(
                f"{v.space:<24} {v.width:>5} {v.identity:>14.3f} {v.optimal:>8.3f} "
                f"{v.random:>7.3f} {v.score:>6.2f} | {tail}"
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
    function_classes: bool = True,
    explained_variance: float = 0.9,
    progress: bool | None = None,
) -> IdentifiabilityReport:
    """Per-layer identifiability of two runs of one architecture on ``data`` (Bürgin et al.),
    with both measures (see the module docstring).

    ``data`` is a :class:`symlab.data.Dataset` (its ``split`` is used), an input tensor, or
    ``(x, y)``. ``G`` defaults to ``symlab.symmetries(model_a, example_input)``.
    ``function_classes=False`` computes the correlation measure only; ``explained_variance``
    sets the supports of the function-class measure. ``progress``: a bar over the layers of
    the function-class measure (default: only when stderr is a terminal; see
    :mod:`symlab.progress`).

    Raises:
        DataError: ``data`` is not in memory or does not fit the models' inputs.
        ArchitectureMismatchError: the two models' parameters differ in names or shapes.

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 8, 2], seed=0); b = sl.nn.MLP([4, 8, 2], seed=0)
    >>> rep = identifiability(a, b, torch.randn(64, 4))
    >>> round(rep.score, 6)  # the same run twice: every unit is itself
    1.0
    """
    x = data_inputs(data, "identifiability", split)
    G = check_pair(model_a, model_b, x, G, example_input=example_input)
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
    if function_classes:
        fcs = function_class_identifiability(
            model_a, model_b, x, G, explained_variance=explained_variance, progress=progress
        )
        for space, fc in fcs.items():
            if space in layers:
                layers[space] = dataclasses.replace(layers[space], function_class=fc)
    return IdentifiabilityReport(layers, kind, {"tensors": where})


def pairwise_identifiability(
    models: list[nn.Module],
    data: Any,
    G: SymmetryGroup | None = None,
    progress: bool | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Scores of every pair of runs, per layer: ``{space: (N, N) matrix}`` (diagonal 1);
    ``progress``: a bar over the pairs (default: only when stderr is a terminal).

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
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    for i, j in progress_items(pairs, progress, "identifiability: pairs"):
        rep = identifiability(models[i], models[j], data, G, progress=False, **kwargs)
        for space, v in rep.layers.items():
            m = out.setdefault(space, np.eye(n))
            m[i, j] = m[j, i] = v.score
    return out
