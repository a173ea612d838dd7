"""Optimal-transport alignment and fusion (soft unit matching, also across widths).

Follows Singh and Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020), Algorithm 1, over
the permutation factors of a derived group: the factors are visited layer by layer (graph
order); for each one, the *incoming* parameters of B's units (every axis the factor moves as an
output axis: weight rows, biases, norm affines), with their other axes already transported by
the earlier plans, are compared with A's by a ground metric, and an optimal transport plan
``T`` (``n_A × n_B``, uniform marginals ``1/n_A`` and ``1/n_B``) is solved with POT — exact
(``ot.emd``) by default, entropic (``ot.sinkhorn``) with ``reg > 0``. B is then carried into
A's basis along every axis the factor moves, output and input alike, by the barycentric map
``M = diag(1/μ_A) T``: ``X_B ↦ M X_B`` (Singh and Jaggi's ``Ŵ_B = diag(1/β) Tᵀ W_B`` and
``W_B T diag(1/β)``). With equal widths, distinct units and ``reg = 0`` the plan is a scaled
permutation and :meth:`TransportAlignment.to_alignment` rounds it to one exactly.

Widths may differ (model B may be wider or narrower than A): the transported B has A's shapes,
so ``(θ_A + T(θ_B)) / 2`` is a fused model of A's width. Axes the factors do not move must
agree. Limits: a factor that moves an axis together with other factors' units (a
concatenation) must have equal widths in both models; the residual stream's own weights (a key
the same factor moves on two axes) enter its cost only when the widths are equal.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from symlab.align.alignment import Alignment
from symlab.align.units import FactorAxis, factor_axes
from symlab.align.weight_matching import AlignmentError, solve_assignment
from symlab.symmetry.group import SymmetryGroup

__all__ = ["TransportAlignment", "fuse_state_dicts", "ot_alignment", "ot_fuse"]

StateDict = Mapping[str, torch.Tensor]


def _ot():
    try:
        import ot
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "optimal-transport alignment needs POT: pip install pot (or symlab's 'ot' extra)"
        ) from e
    return ot


def _transport(x: torch.Tensor, fa: FactorAxis, m: torch.Tensor) -> torch.Tensor:
    """Carry ``x``'s units along ``fa`` through ``m`` (``n_out × n_in``)."""
    n_in = m.shape[1]
    y = x.double().movedim(fa.axis, 0)
    if not (len(fa.positions) == y.shape[0] and torch.equal(fa.positions, torch.arange(len(y)))):
        if m.shape[0] != n_in:
            raise AlignmentError(
                f"{fa.factor} shares axis {fa.axis} of {fa.key} with other units (a "
                "concatenation); transport across widths is not supported there"
            )
        out = y.clone()
        blk = y[fa.positions].reshape(n_in, -1)
        out[fa.positions] = (m @ blk).reshape(y[fa.positions].shape)
        return out.movedim(0, fa.axis)
    rest = y.shape[1:]
    z = (m @ y.reshape(n_in, -1)).reshape(m.shape[0] * fa.repeat, *rest)
    return z.movedim(0, fa.axis)


@dataclass(frozen=True, eq=False)
class TransportAlignment:
    """Soft B-to-A unit matching by optimal transport (see the module docstring).

    Attributes:
        group_a, group_b: the two models' groups (the same object for equal widths).
        plans: factor name → transport plan ``T`` (``n_A × n_B``; rows sum to ``1/n_A``).
        costs: factor name → transport cost ``⟨T, C⟩``.
        objective: ``−Σ costs`` (larger is better, as for :class:`Alignment`).
        info: ground metric, ``reg``, visiting order.

    >>> import symlab as sl
    >>> small, wide = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 6, 2], seed=1)
    >>> ta = ot_alignment(small.state_dict(), wide.state_dict(), sl.symmetries(small),
    ...                   sl.symmetries(wide))
    >>> plan = ta.plans["P[layers.0.linear]"]
    >>> tuple(plan.shape), np.allclose(plan.sum(1), 1 / 4), ta.objective <= 0
    ((4, 6), True, True)
    """

    group_a: SymmetryGroup
    group_b: SymmetryGroup
    plans: dict[str, torch.Tensor]
    costs: dict[str, float]
    objective: float
    method: str = "optimal_transport"
    info: dict[str, object] = field(default_factory=dict)

    def maps(self) -> dict[str, torch.Tensor]:
        """Per factor the barycentric map ``diag(1/μ_A) T`` applied to B's units."""
        return {k: t / t.sum(1, keepdim=True).clamp_min(1e-300) for k, t in self.plans.items()}

    def apply(self, sd_b: StateDict) -> OrderedDict[str, torch.Tensor]:
        """``sd_b`` carried into A's unit basis (and A's widths), every moved axis included."""
        self.group_b.check_state_dict(sd_b)
        maps = self.maps()
        out = OrderedDict((k, v.clone()) for k, v in sd_b.items())
        for name, fas in factor_axes(self.group_b, params_only=False).items():
            for fa in fas:
                if out[fa.key].is_floating_point():
                    out[fa.key] = _transport(out[fa.key], fa, maps[name]).to(sd_b[fa.key].dtype)
        self.group_a.check_state_dict(out)
        return out

    def to_alignment(self) -> Alignment:
        """Round every plan to a permutation (equal widths): the assignment maximising the
        transported mass, within the factor's blocks."""
        if self.group_a is not self.group_b and self.group_a.signature != self.group_b.signature:
            raise AlignmentError("rounding to permutations needs models of equal widths")
        blocks = {f.name: f.blocks for f in self.group_a.factors}
        perms = {k: solve_assignment(t.numpy(), blocks.get(k)) for k, t in self.plans.items()}
        return Alignment.from_perms(
            self.group_a, perms, self.objective, [self.objective], "optimal_transport_rounded",
            dict(self.info),
        )  # fmt: skip


def ot_alignment(
    sd_a: StateDict,
    sd_b: StateDict,
    group_a: SymmetryGroup,
    group_b: SymmetryGroup | None = None,
    *,
    reg: float = 0.0,
    ground: Literal["euclidean", "sqeuclidean"] = "euclidean",
) -> TransportAlignment:
    """Transport plans from B's units to A's, layer by layer (Singh and Jaggi 2020).

    Args:
        sd_a, sd_b: state_dicts of two models of one architecture, possibly of different widths.
        group_a: A's group (``sl.symmetries(model_a)``); ``group_b`` B's (default: ``group_a``,
            for equal widths).
        reg: entropic regularisation (0: exact optimal transport, a vertex of the polytope).
        ground: ground metric between incoming weight vectors.

    Returns:
        a :class:`TransportAlignment`; ``.apply(sd_b)`` is B in A's basis and widths.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> moved = G.act(G.element({"P[layers.0.linear]": torch.tensor([1, 0, 3, 2])}), sd)
    >>> ta = ot_alignment(sd, moved, G)  # equal widths: the plan is the permutation / 4
    >>> (ta.plans["P[layers.0.linear]"] * 4).round().long().argmax(1).tolist()
    [1, 0, 3, 2]
    """
    ot = _ot()
    group_b = group_a if group_b is None else group_b
    group_a.check_state_dict(sd_a)
    group_b.check_state_dict(sd_b)
    axes_a, axes_b = factor_axes(group_a), factor_axes(group_b)
    if list(axes_a) != list(axes_b):
        raise AlignmentError(
            f"the models' permutation factors differ: {list(axes_a)[:4]} vs {list(axes_b)[:4]}"
        )
    roles = {k: spec.axes for k, (_, spec) in group_a.graph.state_keys().items()}
    sizes = {f.name: (int(f.size)) for f in group_a.factors}
    sizes_b = {f.name: (int(f.size)) for f in group_b.factors}
    blocks = {f.name: f.blocks for f in group_a.factors}
    b_cur = {k: v.detach().double() for k, v in sd_b.items() if v.is_floating_point()}
    plans: dict[str, torch.Tensor] = {}
    costs: dict[str, float] = {}
    done: set[str] = set()
    for name in axes_a:
        n_a, n_b = sizes[name], sizes_b[name]
        feats_a, feats_b = [], []
        for fa_a, fa_b in zip(axes_a[name], axes_b[name], strict=True):
            if roles[fa_a.key][fa_a.axis] != "out":
                continue
            other = {
                g for g, lst in axes_a.items() for h in lst
                if h.key == fa_a.key and h.axis != fa_a.axis
            }  # fmt: skip
            if other - done and n_a != n_b:
                continue  # not yet comparable across widths
            xa = sd_a[fa_a.key].detach().double().movedim(fa_a.axis, 0)[fa_a.positions]
            xb = b_cur[fa_b.key].movedim(fa_b.axis, 0)[fa_b.positions]
            xa, xb = xa.reshape(n_a, -1), xb.reshape(n_b, -1)
            if xa.shape[1] != xb.shape[1]:
                continue
            feats_a.append(xa)
            feats_b.append(xb)
        if not feats_a:
            raise AlignmentError(f"{name}: no incoming parameters to compare its units by")
        fa_, fb_ = torch.cat(feats_a, 1).numpy(), torch.cat(feats_b, 1).numpy()
        c = ot.dist(fa_, fb_, metric=ground)
        if blocks.get(name) is not None and n_a == n_b:
            mask = np.ones_like(c, dtype=bool)
            for blk in blocks[name]:
                mask[np.ix_(blk, blk)] = False
            c = np.where(mask, c.max() * 1e3 + 1.0, c)
        mu, nu = np.full(n_a, 1.0 / n_a), np.full(n_b, 1.0 / n_b)
        t = ot.emd(mu, nu, c) if reg == 0 else ot.sinkhorn(mu, nu, c / max(c.max(), 1e-300), reg)
        plan = torch.as_tensor(np.asarray(t), dtype=torch.float64)
        plans[name] = plan
        costs[name] = float((plan.numpy() * c).sum())
        m = plan / plan.sum(1, keepdim=True).clamp_min(1e-300)
        for fa in axes_b[name]:
            b_cur[fa.key] = _transport(b_cur[fa.key], fa, m)
        done.add(name)
    return TransportAlignment(
        group_a, group_b, plans, costs, -sum(costs.values()), "optimal_transport",
        {"reg": reg, "ground": ground, "order": list(axes_a)},
    )  # fmt: skip


def fuse_state_dicts(
    sd_a: StateDict, sd_b: StateDict, alignment: TransportAlignment, weight: float = 0.5
) -> OrderedDict[str, torch.Tensor]:
    """OT fusion: ``(1 − weight) θ_A + weight · T(θ_B)`` in A's widths (floating tensors;
    others from A). Reset BatchNorm statistics of the result on data before use.

    >>> import symlab as sl
    >>> small, wide = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 6, 2], seed=1)
    >>> sd_a, sd_b = small.state_dict(), wide.state_dict()
    >>> ta = ot_alignment(sd_a, sd_b, sl.symmetries(small), sl.symmetries(wide))
    >>> fused = fuse_state_dicts(sd_a, sd_b, ta)
    >>> tuple(fused["layers.0.linear.weight"].shape)  # A's widths
    (4, 3)
    >>> all(torch.allclose(fuse_state_dicts(sd_a, sd_b, ta, weight=0.0)[k], sd_a[k]) for k in sd_a)
    True
    """
    moved = alignment.apply(sd_b)
    out = OrderedDict()
    for k, v in sd_a.items():
        if v.is_floating_point():
            out[k] = ((1 - weight) * v.double() + weight * moved[k].double()).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def ot_fuse(
    model_a: nn.Module,
    model_b: nn.Module,
    group_a: SymmetryGroup,
    group_b: SymmetryGroup | None = None,
    *,
    weight: float = 0.5,
    reg: float = 0.0,
) -> nn.Module:
    """OT fusion of two models into ``model_a``'s widths (a fused copy of ``model_a``).

    >>> import symlab as sl
    >>> small, wide = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 9, 2], seed=1)
    >>> fused = ot_fuse(small, wide, sl.symmetries(small), sl.symmetries(wide))
    >>> tuple(fused.state_dict()["layers.0.linear.weight"].shape)
    (4, 3)
    """
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    al = ot_alignment(sd_a, sd_b, group_a, group_b, reg=reg)
    out = copy.deepcopy(model_a)
    out.load_state_dict(fuse_state_dicts(sd_a, sd_b, al, weight))
    return out.eval()
