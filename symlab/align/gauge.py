"""Where the continuous and sign factors of a derived group act, and their canonical values.

The scaling symmetries of a network (ReLU-type positive scalings, common scalings in front of a
normalisation) and its sign symmetries (tanh, sigmoid flips, a LayerNorm's common sign) act on
parameters entry by entry: an entry is multiplied by ``s_k`` when it lies on an axis carrying
unit ``k``'s *own* weights (an ``out`` axis: the unit's incoming weights, bias, affine scale) and
divided by ``s_k`` on an axis that *reads* the unit (its outgoing weights). The layout is read
off the group's own per-tensor maps (:meth:`SymmetryGroup.tensor_transforms`) and checked
against ``G.act`` on a probe, so canonicalisation and ``G.act`` agree by construction.

Canonical scales (the rule of :func:`canonical_scale_element`). With ``u = log s`` over every
unit of every ``scaling`` / ``common_scaling`` factor, minimise the convex function

    Φ(u) = Σ_entries θ_e² · exp(2 a_e·u)  −  2 Σ_k c_k u_k,

where ``a_e`` lists the ``±1`` exponents of entry ``e``. For a unit with incoming *and* outgoing
parameters ``c_k = 0`` and the optimum is the **balanced** point, ``‖in_k‖ = ‖out_k‖`` (the
minimum-norm representative of the orbit; Neyshabur et al. 2015, "Path-SGD"; Du et al. 2018,
"Algorithmic regularization ... balanced"); a unit whose parameters lie on one side only (a
scale in front of BatchNorm / LayerNorm, or a unit whose other side is all zero) gets
``c_k = ±m_k`` and the optimum fixes that side's squared norm to ``m_k``: **1** per unit of a
per-unit scale (BatchNorm), the **number of units** for a common scale (LayerNorm: the layer's
incoming weights then have unit RMS row norm, keeping pre-activations at a scale where the
norm's ``eps`` stays negligible). Under any scaling ``t`` of
the group ``Φ(u + log t) = Φ(u) + const``, so the minimiser moves with the orbit and the result
does not depend on the representative started from (the optimum is unique when Φ is strictly
convex, the generic case). Solved by damped Newton in float64.

Canonical signs (:func:`canonical_sign_element`): sign factors are fixed in graph order; a unit's
sign is chosen so that its largest-magnitude incoming entry (among entries whose other axes no
unfixed sign factor moves) is positive; ties go to the first such entry, and units with no such
non-zero entry keep their sign.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from symlab.errors import StateDictError
from symlab.symmetry.factors import Factor, GroupElement
from symlab.symmetry.group import SymmetryGroup

__all__ = [
    "GaugeTerm",
    "canonical_scale_element",
    "canonical_sign_element",
    "gauge_terms",
    "scale_factors",
    "sign_factors",
]

StateDict = Mapping[str, torch.Tensor]
_SCALES = ("scaling", "common_scaling")
_SIGNS = ("sign", "common_sign", "flip")


@dataclass(frozen=True)
class GaugeTerm:
    """One parameter axis moved by a diagonal factor: ``unit[p]`` is the factor's unit at axis
    position ``p`` (``-1``: not moved), ``direction`` +1 (multiplied) or -1 (divided)."""

    key: str
    axis: int
    factor: str
    unit: torch.Tensor
    direction: int


def scale_factors(G: SymmetryGroup) -> list[Factor]:
    """The positive-scaling factors (per unit or common) on graph tensors."""
    return [f for f in G.factors if f.kind in _SCALES and not f.internal and f.axes]


def sign_factors(G: SymmetryGroup) -> list[Factor]:
    """The sign-type factors (signs, sigmoid flips, common signs) on graph tensors."""
    return [f for f in G.factors if f.kind in _SIGNS and not f.internal and f.axes]


def _n_units(f: Factor) -> int:
    return 1 if f.kind.startswith("common") else int(f.size)


def gauge_terms(G: SymmetryGroup, f: Factor) -> list[GaugeTerm]:
    """The trainable-parameter axes ``f`` moves, unit by unit (see the module docstring)."""
    n = int(f.size)
    probe = torch.arange(n, dtype=torch.float64) + 2.0
    if f.kind.startswith("common"):
        probe = torch.full((n,), 2.0, dtype=torch.float64)
    maps = G.tensor_transforms({}, {f.space: probe})
    keys = G.graph.state_keys()
    out = []
    for key, axis in f.axes:
        node, spec = keys[key]
        if spec.kind != "param":
            continue
        role = spec.axes[axis]
        tensor = node.name if role == "out" else G.graph.inputs(node.name)[0]
        scale = maps[tensor].scale
        length = int(spec.shape[axis])
        if scale is None or scale.ndim != 1 or len(scale) != length:
            raise StateDictError(f"cannot locate the units of {f.name} along {key} axis {axis}")
        unit = torch.where(scale == 1.0, -1, scale.round().long() - 2)
        out.append(GaugeTerm(key, axis, f.name, unit, 1 if role == "out" else -1))
    _check_layout(G, f, out)
    return out


def _predict(terms: list[GaugeTerm], key: str, shape: torch.Size, values: torch.Tensor):
    """Per entry of ``key``, ``Π values[unit] ** direction`` over ``terms`` (1 where unmoved)."""
    pad = torch.cat([values, values.new_ones(1)])
    out = torch.ones(shape, dtype=torch.float64)
    for t in terms:
        if t.key == key:
            vals = pad[t.unit] ** t.direction  # index -1 reads the pad
            out = out * vals.reshape([-1 if d == t.axis else 1 for d in range(len(shape))])
    return out


def _check_layout(G: SymmetryGroup, f: Factor, terms: list[GaugeTerm]) -> None:
    """Compare the read-off layout with ``G.act`` on a probe; refuse layouts that differ."""
    g = torch.Generator().manual_seed(0)
    r = torch.rand(_n_units(f), generator=g, dtype=torch.float64)
    values = torch.exp(r + 0.5) if f.kind in _SCALES else torch.where(r > 0.5, 1.0, -1.0)
    value = values[0] if f.kind.startswith("common") else values
    ones = {
        k: torch.ones(tuple(int(s) for s in spec.shape), dtype=torch.float64)
        for k, (_, spec) in G.graph.state_keys().items()
    }
    moved = G.act(G.element({f.name: value}), ones)
    for k in {t.key for t in terms}:
        if not torch.allclose(moved[k], _predict(terms, k, moved[k].shape, values), rtol=1e-9):
            raise StateDictError(
                f"the action of {f.name} on {k} is not a per-unit multiplication this module "
                "can read; canonical scales and signs are not available for this layout"
            )


def _structure(G: SymmetryGroup, factors: list[Factor]):
    terms, offsets, total, norm = [], {}, 0, []
    for f in factors:
        norm += [float(int(f.size)) if f.kind == "common_scaling" else 1.0] * _n_units(f)
        offsets[f.name] = total
        for t in gauge_terms(G, f):
            unit = torch.where(t.unit >= 0, t.unit + total, -1)
            terms.append(GaugeTerm(t.key, t.axis, t.factor, unit, t.direction))
        total += _n_units(f)
    return terms, offsets, total, torch.tensor(norm, dtype=torch.float64)


def _flat_index(t: GaugeTerm, shape: torch.Size, dim: int) -> torch.Tensor:
    idx = torch.where(t.unit >= 0, t.unit, dim)
    view = [-1 if d == t.axis else 1 for d in range(len(shape))]
    return idx.reshape(view).expand(shape).reshape(-1)


def canonical_scale_element(
    state_dict: StateDict, G: SymmetryGroup, *, max_iter: int = 200, tol: float = 1e-24
) -> GroupElement:
    """The scaling element ``h`` that brings ``state_dict`` to the canonical scale:
    ``G.act(h, state_dict)`` is balanced (see the module docstring). Other factors: identity.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net)
    >>> c = G.act(canonical_scale_element(net.state_dict(), G), net.state_dict())
    >>> w_in = (c["layers.0.linear.weight"] ** 2).sum(1) + c["layers.0.linear.bias"] ** 2
    >>> torch.allclose(w_in, (c["head.weight"] ** 2).sum(0))  # each ReLU unit balanced
    True
    """
    factors = scale_factors(G)
    if not factors:
        return G.identity()
    terms, offsets, dim, target = _structure(G, factors)
    keys = sorted({t.key for t in terms})
    sq = {k: state_dict[k].detach().double() ** 2 for k in keys}
    by_key = {k: [t for t in terms if t.key == k] for k in keys}
    idx = {id(t): _flat_index(t, sq[t.key].shape, dim) for t in terms}
    # which side(s) of each unit carry mass decides its linear coefficient
    mass = torch.zeros(2, dim + 1, dtype=torch.float64)
    for t in terms:
        mass[int(t.direction < 0)].index_add_(0, idx[id(t)], sq[t.key].reshape(-1))
    has_in, has_out = mass[0, :dim] > 0, mass[1, :dim] > 0
    c = target * (has_in & ~has_out).double() - target * (has_out & ~has_in).double()
    free = has_in | has_out

    def evaluate(u: torch.Tensor, need_hess: bool):
        pad = torch.cat([u, u.new_zeros(1)])
        phi = -2.0 * float((c * u).sum())
        grad = torch.zeros(dim + 1, dtype=torch.float64)
        hess = torch.zeros(dim + 1, dim + 1, dtype=torch.float64) if need_hess else None
        for k in keys:
            e = torch.zeros(sq[k].numel(), dtype=torch.float64)
            for t in by_key[k]:
                e += t.direction * pad[idx[id(t)]]
            w = sq[k].reshape(-1) * torch.exp(2.0 * e)
            phi += float(w.sum())
            for t in by_key[k]:
                grad.index_add_(0, idx[id(t)], 2.0 * t.direction * w)
                if hess is not None:
                    for s in by_key[k]:
                        hess.index_put_(
                            (idx[id(t)], idx[id(s)]), 4.0 * t.direction * s.direction * w,
                            accumulate=True,
                        )  # fmt: skip
        grad = grad[:dim] - 2.0 * c
        grad[~free] = 0.0
        return phi, grad, (None if hess is None else hess[:dim, :dim])

    dense = dim <= 3000
    u = torch.zeros(dim, dtype=torch.float64)
    phi, grad, hess = evaluate(u, dense)
    for _ in range(max_iter):
        if dense:
            h = hess + torch.diag(torch.where(free, 1e-12 * hess.diagonal().abs().max(), 1.0))
            step = -torch.linalg.solve(h, grad)
        else:  # diagonal Newton for very wide models
            diag = _diag_hessian(sq, by_key, idx, u, dim)
            step = -grad / torch.where(free, diag.clamp_min(1e-300), 1.0)
        dec = -float(grad @ step)
        if dec <= tol * max(1.0, abs(phi)):
            break
        t = 1.0
        while t > 1e-8:
            new_u = u + t * step
            new_phi, new_grad, new_hess = evaluate(new_u, dense)
            if new_phi <= phi - 0.25 * t * dec:
                break
            # near the minimum φ's rounding (≈ 1e-16 |φ|) hides the decrease, which would stop
            # u at ≈ √1e-16 of its optimum: there a full Newton step that shrinks the gradient
            # is taken (the quadratic model is exact to far below φ's rounding)
            near = t == 1.0 and dec <= 1e-10 * max(1.0, abs(phi))
            if near and float(new_grad.norm()) < float(grad.norm()):
                break
            t *= 0.5
        else:  # no decrease left at this precision
            break
        u, phi, grad, hess = new_u, new_phi, new_grad, new_hess
    values = {}
    for f in factors:
        v = torch.exp(u[offsets[f.name] : offsets[f.name] + _n_units(f)])
        values[f.name] = v[0] if f.kind == "common_scaling" else v
    return G.element(values)


def _diag_hessian(sq, by_key, idx, u, dim) -> torch.Tensor:
    pad = torch.cat([u, u.new_zeros(1)])
    diag = torch.zeros(dim + 1, dtype=torch.float64)
    for k, ts in by_key.items():
        e = sum(t.direction * pad[idx[id(t)]] for t in ts)
        w = sq[k].reshape(-1) * torch.exp(2.0 * e)
        for t in ts:
            diag.index_add_(0, idx[id(t)], 4.0 * w)
    return diag[:dim]


def canonical_sign_element(
    state_dict: StateDict, G: SymmetryGroup
) -> tuple[GroupElement, dict[str, torch.Tensor]]:
    """The sign element that fixes the signs of ``state_dict`` by the module docstring's rule,
    and per sign factor a mask of the units that had no deciding entry (kept as they were).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], activation="tanh", seed=0); G = sl.symmetries(net)
    >>> sd = net.state_dict()
    >>> flipped = G.act(G.element({"sign[layers.0.linear]": torch.tensor([-1.0, 1, -1, 1])}), sd)
    >>> def canon(s):
    ...     h, undecided = canonical_sign_element(s, G)
    ...     return G.act(h, s), undecided
    >>> (c1, undecided), (c2, _) = canon(sd), canon(flipped)
    >>> all(torch.allclose(c1[k], c2[k]) for k in sd), undecided["sign[layers.0.linear]"].any()
    (True, tensor(False))
    """
    factors = sign_factors(G)
    if not factors:
        return G.identity(), {}
    terms = {f.name: gauge_terms(G, f) for f in factors}
    moved_by = {}  # (key, axis) -> sign factors moving it
    for name, ts in terms.items():
        for t in ts:
            moved_by.setdefault((t.key, t.axis), set()).add(name)
    sd = {k: v.detach().double() for k, v in state_dict.items() if v.is_floating_point()}
    values: dict[str, torch.Tensor] = {}
    undecided = {}
    unfixed = set(terms)
    for f in factors:
        n = int(f.size)
        best = torch.zeros(n, dtype=torch.float64)  # signed value of the largest entry so far
        for t in terms[f.name]:
            if t.direction < 0:
                continue
            x = sd[t.key]
            others = [a for a in range(x.ndim) if a != t.axis]
            if any(moved_by.get((t.key, a), set()) & unfixed for a in others):
                continue
            rows = x.movedim(t.axis, 0).reshape(x.shape[t.axis], -1)
            ok = t.unit >= 0
            if not ok.any() or rows.shape[1] == 0:
                continue
            unit = 0 if f.kind == "common_sign" else None
            arg = rows.abs().argmax(1)
            val = rows[torch.arange(len(rows)), arg]
            for p in torch.nonzero(ok).flatten().tolist():
                k = unit if unit is not None else int(t.unit[p])
                if abs(float(val[p])) > abs(float(best[k])):
                    best[k] = val[p]
        s = torch.where(best < 0, -1.0, 1.0).double()
        undecided[f.name] = best == 0
        values[f.name] = s[0] if f.kind == "common_sign" else s
        h = G.element({f.name: values[f.name]})
        sd = {k: v.double() for k, v in G.act(h, _with_ints(sd, state_dict)).items()
              if v.is_floating_point()}  # fmt: skip
        unfixed.discard(f.name)
    return G.element(values), undecided


def _with_ints(sd: Mapping[str, torch.Tensor], full: StateDict) -> dict[str, torch.Tensor]:
    return {k: sd.get(k, v) for k, v in full.items()}
