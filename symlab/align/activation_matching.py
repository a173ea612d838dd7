"""Activation matching: match units by how their activations co-vary on data.

Follows Ainsworth, Hayase, Srinivasa (Git Re-Basin, ICLR 2023, §3.1) and Li et al. 2016
("Convergent Learning"): per permutation space, the cross-correlation (or inner product) of the
two models' unit activations over the data is one linear assignment problem, solved
independently of the others. Statistics are streamed over batches as running sums (the
activations themselves are never kept); convolutional positions count as samples.

Where a space's units are recorded: every tensor of the space (``record="all"``, the default:
the cost is the mean of their correlation matrices, so a ReLU unit that is dead after the
activation is still matched by its pre-activation) or only its last one (``record="last"``, Git
Re-Basin's choice: after the activation; the residual stream's final sum). A
:class:`~symlab.nn.GraphNet` is read through ``forward_all``; other modules through forward hooks
on the submodules that produce the space's tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from symlab.align.alignment import Alignment
from symlab.align.data import iter_batches
from symlab.align.units import matchable_factors
from symlab.align.weight_matching import AlignmentError, solve_assignment
from symlab.errors import DataError
from symlab.nn.graphnet import GraphNet
from symlab.symmetry.factors import Factor
from symlab.symmetry.group import SymmetryGroup

__all__ = ["activation_matching", "correlation_matrices", "record_tensors", "unit_activations"]

_CONV_OPS = ("conv", "pool", "batchnorm2d", "batchnorm3d", "groupnorm", "instancenorm")


def record_tensors(
    model: nn.Module, G: SymmetryGroup, factors: list[Factor], record: str = "all"
) -> dict[str, list[str]]:
    """Per factor, the graph tensors whose outputs carry its units (see the module docstring)."""
    if record not in ("all", "last"):
        raise ValueError(f"record must be 'all' or 'last', got {record!r}")
    out = {}
    for f in factors:
        tensors = G.space_tensors(f.space)
        if not isinstance(model, GraphNet):
            names = dict(model.named_modules())
            tensors = [t for t in tensors if t in names]
        if not tensors:
            raise AlignmentError(
                f"no submodule of the model produces the units of {f.name}; activation "
                "matching records module outputs with forward hooks"
            )
        out[f.name] = tensors if record == "all" else tensors[-1:]
    return out


def _channel_axis(x: torch.Tensor, n: int, op: str) -> int:
    if x.ndim == 2:
        return 1
    first, last = x.shape[1] == n, x.shape[-1] == n
    if first and not last:
        return 1
    if last and not first:
        return x.ndim - 1
    return 1 if any(s in op for s in _CONV_OPS) else x.ndim - 1


def unit_activations(
    model: nn.Module, tensors: list[str], x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Outputs of the named graph tensors on inputs ``x`` (no grad)."""
    with torch.no_grad():
        if isinstance(model, GraphNet):
            vals = model.forward_all(x)
            return {t: vals[t] for t in tensors}
        got: dict[str, torch.Tensor] = {}
        handles = []
        for t in set(tensors):

            def hook(_m: nn.Module, _i: Any, o: Any, t: str = t) -> None:
                got[t] = o

            handles.append(model.get_submodule(t).register_forward_hook(hook))
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        return got


class _Moments:
    """Running sums for the cross-correlation of two sets of ``n`` units."""

    def __init__(self, n: int) -> None:
        z = torch.zeros(n, dtype=torch.float64)
        self.count = 0
        self.sa, self.sb, self.saa, self.sbb = z.clone(), z.clone(), z.clone(), z.clone()
        self.sab = torch.zeros(n, n, dtype=torch.float64)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.double(), b.double()
        self.count += a.shape[0]
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.saa += (a * a).sum(0)
        self.sbb += (b * b).sum(0)
        self.sab += a.T @ b

    def matrix(self, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cost matrix and the two masks of varying units."""
        m = self.count
        ma, mb = self.sa / m, self.sb / m
        sda = (self.saa / m - ma**2).clamp_min(0).sqrt()
        sdb = (self.sbb / m - mb**2).clamp_min(0).sqrt()
        ok_a, ok_b = _varying(sda), _varying(sdb)
        if kind == "inner":
            return self.sab / m, ok_a, ok_b
        cov = self.sab / m - torch.outer(ma, mb)
        corr = cov / torch.outer(torch.where(ok_a, sda, 1.0), torch.where(ok_b, sdb, 1.0))
        corr[~ok_a] = 0.0
        corr[:, ~ok_b] = 0.0
        return corr, ok_a, ok_b


def _varying(sd: torch.Tensor) -> torch.Tensor:
    return sd > 1e-8 * max(float(sd.max()), 1e-30)


def correlation_matrices(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    G: SymmetryGroup,
    factors: list[Factor],
    *,
    kind: Literal["correlation", "inner"] = "correlation",
    batch_size: int = 1024,
    split: str = "train",
    record: Literal["all", "last"] = "all",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, list[_Moments]], dict[str, list[str]]]:
    """Streamed activation statistics of both models for the units of each of ``factors``
    (see :func:`activation_matching` for the arguments): per factor, one :class:`_Moments`
    per recorded tensor, and the tensors recorded."""
    if kind not in ("correlation", "inner"):
        raise ValueError(f"kind must be 'correlation' or 'inner', got {kind!r}")
    G.check_state_dict(model_a.state_dict())
    G.check_state_dict(model_b.state_dict())
    where = record_tensors(model_a, G, factors, record)
    tensors = list(dict.fromkeys(t for ts in where.values() for t in ts))
    moments = {(f.name, t): _Moments(int(f.size)) for f in factors for t in where[f.name]}
    modes = (model_a.training, model_b.training)
    model_a.eval()
    model_b.eval()
    try:
        for x, _ in iter_batches(data, batch_size, split):
            if transform is not None:
                x = transform(x)
            # each model on its own copy: a forward may write into its input
            acts_a = unit_activations(model_a, tensors, x.clone())
            acts_b = unit_activations(model_b, tensors, x.clone())
            for (_, t), mom in moments.items():
                a, b = acts_a[t], acts_b[t]
                n = len(mom.sa)
                ax = _channel_axis(a, n, G.graph.node(t).op)
                mom.add(a.movedim(ax, -1).reshape(-1, n), b.movedim(ax, -1).reshape(-1, n))
    finally:
        model_a.train(modes[0])
        model_b.train(modes[1])
    return {f.name: [moments[f.name, t] for t in where[f.name]] for f in factors}, where


def activation_matching(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    G: SymmetryGroup,
    *,
    kind: Literal["correlation", "inner"] = "correlation",
    batch_size: int = 1024,
    split: str = "train",
    constant: Literal["ignore", "raise"] = "ignore",
    record: Literal["all", "last"] = "all",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Alignment:
    """Align ``model_b`` to ``model_a`` by matching unit activations on ``data``.

    Args:
        model_a, model_b: two models of ``G``'s architecture.
        data: a :class:`symlab.data.Dataset` (its ``split``), inputs, ``(x, y)`` or an
            iterable of batches.
        kind: ``"correlation"`` (Pearson; Git Re-Basin, Li et al.) or ``"inner"`` (mean
            product of activations).
        batch_size: rows per forward pass for in-memory data.
        constant: units whose activation never varies in any recorded tensor carry no
            correlation; ``"ignore"`` scores them 0 (any partner) and lists them in
            ``info["constant"]``, ``"raise"`` raises :class:`DataError` naming them.
        record: ``"all"`` tensors of each space or its ``"last"`` (see the module docstring).
        transform: optional map applied to each input batch first.

    Returns:
        an :class:`Alignment`; ``objective`` is the mean matched correlation (or inner
        product) over all units, ``trace`` its value at the identity and at the solution.

    Raises:
        DataError: fewer than two samples, or constant units with ``constant="raise"``.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> other = sl.nn.MLP([3, 4, 2])
    >>> h = G.element({"P[layers.0.linear]": torch.tensor([1, 0, 3, 2])})
    >>> _ = other.load_state_dict(G.act(h, sd))  # the same function, units reordered
    >>> al = activation_matching(net, other, torch.randn(64, 3), G)
    >>> al.perms["P[layers.0.linear]"].tolist(), round(al.objective, 6)
    ([1, 0, 3, 2], 1.0)
    """
    factors = matchable_factors(G)
    stats, where = correlation_matrices(
        model_a, model_b, data, G, factors, kind=kind, batch_size=batch_size, split=split,
        record=record, transform=transform,
    )  # fmt: skip
    perms: dict[str, torch.Tensor] = {}
    total = ident = 0.0
    units = 0
    constant_units: dict[str, dict[str, list[int]]] = {}
    per_space: dict[str, float] = {}
    for f in factors:
        moms = stats[f.name]
        if moms[0].count < 2:
            raise DataError(
                f"activation matching needs at least 2 samples per unit; {f.name} got "
                f"{moms[0].count} (pass more data)"
            )
        mats = [m.matrix(kind) for m in moms]
        cost = sum(m[0] for m in mats) / len(mats)
        live_a = torch.stack([m[1] for m in mats]).any(0)
        live_b = torch.stack([m[2] for m in mats]).any(0)
        dead = {
            m: torch.nonzero(~live).flatten().tolist() for m, live in (("a", live_a), ("b", live_b))
        }
        if dead["a"] or dead["b"]:
            if constant == "raise":
                raise DataError(
                    f"{f.name}: units with constant activation on this data (no correlation "
                    f"defined): model_a {dead['a'][:10]}, model_b {dead['b'][:10]}; pass more "
                    "varied data or constant='ignore'"
                )
            constant_units[f.name] = dead
        c = cost.numpy()
        p = solve_assignment(c, f.blocks)
        perms[f.name] = p
        n = len(p)
        matched = float(c[np.arange(n), p.numpy()].sum())
        total += matched
        ident += float(np.trace(c))
        units += n
        per_space[f.name] = matched / n
    obj = total / max(units, 1)
    return Alignment.from_perms(
        G,
        perms,
        obj,
        [ident / max(units, 1), obj],
        "activation_matching",
        {"kind": kind, "per_space": per_space, "constant": constant_units, "tensors": where},
    )
