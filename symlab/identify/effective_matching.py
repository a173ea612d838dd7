"""The algorithm of :func:`symlab.align.effective_matching` (Bürgin, Herbst, Lin, Jegelka,
ICML 2026): B's unit functions moved into A's slots across effective symmetries and re-realised
at least norm in each slot's class. The steps are described in :mod:`symlab.align.effective`;
the algorithm sits here, beside the function classes, input supports and assignments it is
built from, and ``symlab.align`` exposes it under its public name.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from symlab.align.effective import EffectiveLayer, EffectiveMatching
from symlab.errors import ArgumentError, DataError
from symlab.identify.assignment import min_cost_assignment
from symlab.identify.cross_run import function_class_layers, gauge_free
from symlab.identify.function_classes import function_classes_from_weights
from symlab.identify.layers import (
    check_pair,
    data_inputs,
    layer_io,
    layer_parts,
    support_coefficients,
)
from symlab.identify.support import support as make_support
from symlab.symmetry.group import SymmetryGroup

__all__ = ["fit_rows", "match"]

_KEEP_TOL = 1e-5  # relative change below which a slot keeps its own weights
_SPAN = 1.0 - 1e-8 - 1e-12  # explained variance from which a support is the data's span
#: ops a unit's output may pass through on its way to the next layer for its function to move
#: with it (they act unit by unit, with their parameters permuted along)
_UNITWISE = {"activation", "layernorm", "rmsnorm", "batchnorm", "dropout"}


def _movable(G: SymmetryGroup, space: str) -> bool:
    """Whether the units of ``space`` can change slots: every op its units pass through after
    the producing layer acts unit by unit (a FiGLU gate mixes units: its slots stay)."""
    return all(t == space or G.graph.node(t).op in _UNITWISE for t in G.space_tensors(space))


def _linear_like(m: nn.Module) -> bool:
    masked = hasattr(m, "mask") and hasattr(m, "fixed")
    return isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d) or (
        masked and isinstance(getattr(m, "weight", None), nn.Parameter)
    )


def _forward_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The linear and convolutional modules in the order the forward calls them."""
    order: list[str] = []

    def seen(name: str) -> Any:
        return lambda _m, _a: None if name in order else order.append(name)

    handles = [
        m.register_forward_pre_hook(seen(name))
        for name, m in model.named_modules()
        if name and _linear_like(m)
    ]
    try:
        with torch.no_grad():
            model.eval()
            model(x[:2].clone())  # a copy: a forward may write into its input
    finally:
        for h in handles:
            h.remove()
    return order


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x.clone())  # a copy: a forward may write into its input
    if not isinstance(out, torch.Tensor):
        raise DataError("effective matching needs a model that returns one tensor")
    return out.double().reshape(len(x), -1)


def _rel(diff: torch.Tensor, ref: torch.Tensor) -> float:
    den = float(((ref - ref.mean(0, keepdim=True)) ** 2).sum())
    return float((diff**2).sum()) ** 0.5 / max(den, 1e-300) ** 0.5


class _Builder:
    """B', built layer by layer (state kept in one canonical model copy)."""

    def __init__(self, model_b: nn.Module, G: SymmetryGroup) -> None:
        self.model = copy.deepcopy(model_b).eval()
        self.G = G

    def permute(self, space: str, perm: torch.Tensor) -> None:
        G = self.G
        sd = G.act_transforms(G.tensor_transforms({space: perm}, {}), self.model.state_dict())
        self.model.load_state_dict(sd)

    def set_rows(self, layer: str, rows: torch.Tensor, weights: torch.Tensor,
                 bias: torch.Tensor | None) -> None:  # fmt: skip
        m = self.model.get_submodule(layer)
        with torch.no_grad():
            w = m.weight.detach().clone()
            flat = w.reshape(w.shape[0], -1)
            flat[rows] = weights[rows].to(w.dtype)
            m.weight.copy_(flat.reshape(w.shape))
            if bias is not None and getattr(m, "bias", None) is not None:
                b = m.bias.detach().clone()
                b[rows] = bias[rows].to(b.dtype)
                m.bias.copy_(b)


def fit_rows(
    x: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    fixed: torch.Tensor | None,
    rows: torch.Tensor,
    *,
    rtol: float = 1e-10,
    chunk: int = 32,
) -> torch.Tensor:
    """Trainable weights (n, d) whose pre-activations fit ``target`` (samples × n) on the
    centred inputs ``x`` best in the data's metric, inside each slot's class: for each row in
    ``rows``, the least-norm ``w`` minimising ``‖x_c (f_i + d_i ⊙ w) − t_{i,c}‖²`` (zero on
    masked inputs; the bias restores the mean). Where the target lies in the class on the
    data's span this realises it exactly, as :meth:`FunctionClasses.realizers` does; where it
    does not (a support relaxed by ``explained_variance`` let a function move into a slot whose
    mask cannot hold all of it), it keeps the part of the function the data see most, not an
    unweighted projection of its support coefficients.

    >>> x = torch.randn(200, 4, dtype=torch.float64); w = torch.randn(3, 4, dtype=torch.float64)
    >>> mask = torch.ones(3, 4, dtype=torch.float64)
    >>> torch.allclose(fit_rows(x, x @ w.T, mask, None, torch.ones(3, dtype=torch.bool)), w)
    True
    """
    xc = x.double() - x.double().mean(0, keepdim=True)
    tc = target.double() - target.double().mean(0, keepdim=True)
    d = mask.double()
    sigma = xc.T @ xc
    rhs = xc.T @ tc  # (d, n)
    if fixed is not None:
        rhs = rhs - sigma @ fixed.double().T
    out = torch.zeros_like(d)
    idx = torch.nonzero(rows).flatten()
    scale = float(torch.diagonal(sigma).mean().clamp_min(1e-300))
    eye = torch.eye(d.shape[1], dtype=torch.float64)
    for start in range(0, len(idx), chunk):
        sel = idx[start : start + chunk]
        dm = d[sel]  # (c, d)
        a = dm[:, :, None] * sigma[None] * dm[:, None, :] + scale * (1 - dm)[:, :, None] * eye
        b = dm * rhs.T[sel]
        w = torch.matmul(torch.linalg.pinv(a, hermitian=True, rtol=rtol), b.unsqueeze(-1))
        out[sel] = dm * w.squeeze(-1)
    return out


def _assign(cost: torch.Tensor) -> np.ndarray:
    perm, value = min_cost_assignment(cost.numpy())
    if not np.isfinite(value):  # no complete finite assignment: keep B's order
        return np.arange(cost.shape[0])
    return perm


def match(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    G: SymmetryGroup | None = None,
    *,
    objective: str = "distance",
    explained_variance: float = 1.0 - 1e-8,
    k: int | None = None,
    split: str = "train",
    gauges: bool = True,
) -> EffectiveMatching:
    """:func:`symlab.align.effective_matching` (its arguments and result are documented there).

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([4, 6, 2], seed=0), sl.nn.MLP([4, 6, 2], seed=1)
    >>> eff = match(a, b, torch.randn(128, 4))
    >>> eff.residual < 1e-4, sorted(eff.layers)
    (True, ['head', 'layers.0.linear'])
    """

    if objective not in ("distance", "cost"):
        raise ArgumentError(f"objective must be 'distance' or 'cost', got {objective!r}")
    x = data_inputs(data, "effective_matching", split)
    G = check_pair(model_a, model_b, x, G)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    h_a = None
    if gauges:
        sd_a, h_a = gauge_free(sd_a, G)
        sd_b, _ = gauge_free(sd_b, G)
    ca, cb = copy.deepcopy(model_a).eval(), copy.deepcopy(model_b).eval()
    ca.load_state_dict(sd_a)
    cb.load_state_dict(sd_b)
    order = _forward_order(ca, x)
    matched = set(function_class_layers(ca, G))
    io_a, io_b = layer_io(ca, x, order), layer_io(cb, x, order)
    build = _Builder(cb, G)
    # B' lives in A's architecture: A's masks, fixed parts and gates define the slots
    fixed = [k for k, (_, spec) in G.graph.state_keys().items() if spec.kind == "fixed"]
    foreign = [k for k in fixed if not torch.equal(sd_a[k], sd_b[k])]
    if foreign:
        build.model.load_state_dict({**build.model.state_dict(), **{k: sd_a[k] for k in foreign}})
    layers: dict[str, EffectiveLayer] = {}
    changed = bool(foreign)
    for name in order:
        z_b = io_b[name][1].double()  # B's functions (pre-activations), B's unit order
        x_cur, z_cur = layer_io(build.model, x, [name])[name]
        supp = make_support(x_cur, explained_variance, k=k)
        w_cur, mask, fixed = layer_parts(build.model, name)
        fc = function_classes_from_weights(w_cur, supp, mask, fixed)
        a_b, _ = support_coefficients(x_cur, z_b, supp)
        n = fc.n
        perm = np.arange(n)
        cost_val = ident_val = 0.0
        if name in matched and _movable(G, name):
            reach = fc.cost(a_b)  # C^{AB} from the class centre: can slot i realise j at all?
            if objective == "cost":
                cost = reach
            else:
                a_a, _ = support_coefficients(x_cur, io_a[name][1].double(), supp)
                cost = fc.cost(a_b, centres=a_a, reach=False)
                cost = cost.masked_fill(~torch.isfinite(reach), float("inf"))
            perm = _assign(cost)
            cost_val = float(cost[torch.arange(n), torch.from_numpy(perm)].sum())
            ident_val = float(torch.diagonal(cost).sum())
            if (perm != np.arange(n)).any():
                build.permute(name, torch.from_numpy(perm))
                changed = True
                x_cur, z_cur = layer_io(build.model, x, [name])[name]
                w_cur, mask, fixed = layer_parts(build.model, name)
        target = z_b[:, torch.from_numpy(perm)]
        err = ((z_cur.double() - target) ** 2).sum(0)
        ref = ((target - target.mean(0, keepdim=True)) ** 2).sum(0).clamp_min(1e-300)
        redo = (err / ref) > _KEEP_TOL**2
        unreachable = 0
        if bool(redo.any()):
            changed = True
            a_t = a_b[torch.from_numpy(perm)]
            reach = torch.isfinite(torch.diagonal(fc.cost(a_t)))
            unreachable = int((~reach).sum())
            w_new = fc.realizers(a_t)  # exact where the support spans the data and t ∈ class
            if supp.explained_variance < _SPAN:  # a relaxed support: fit on the data instead
                reach = torch.zeros_like(reach)
            fit = redo & ~reach
            if bool(fit.any()):
                w_new[fit] = fit_rows(x_cur, target, fc.mask, fixed, fit)[fit]
            full = fc.mask * w_new + (0.0 if fixed is None else fixed.double())
            bias = target.mean(0) - x_cur.double().mean(0) @ full.T  # restores the mean
            build.set_rows(name, torch.nonzero(redo).flatten(), w_new, bias)
            z_cur = layer_io(build.model, x, [name])[name][1]
        res_err = float(((z_cur.double() - target) ** 2).sum())
        res_ref = float(((target - target.mean(0, keepdim=True)) ** 2).sum())
        layers[name] = EffectiveLayer(
            name, torch.from_numpy(perm), int((perm != np.arange(n)).sum()), int(redo.sum()),
            unreachable, cost_val, ident_val, (res_err / max(res_ref, 1e-300)) ** 0.5,
        )  # fmt: skip
    if not changed:
        return EffectiveMatching(OrderedDict(model_b.state_dict()), 0.0, layers, objective,
                                 {"rows": len(x)})  # fmt: skip
    sd = build.model.state_dict()
    if h_a is not None:
        sd = G.act(G.inverse(h_a), sd)
    sd = OrderedDict((key, sd[key].to(v.dtype)) for key, v in model_b.state_dict().items())
    out = copy.deepcopy(model_b)
    out.load_state_dict(sd)
    residual = _rel(_outputs(out, x) - _outputs(model_b, x), _outputs(model_b, x))
    return EffectiveMatching(sd, residual, layers, objective, {"rows": len(x)})
