"""Canonical forms: one representative per orbit of the derived group, and distances modulo it.

No existing library has these; the rule is symlab's own, applied in three steps, each through
``G.element`` + ``G.act`` (no separate permutation or scaling code):

1. **Scales** (:func:`symlab.align.gauge.canonical_scale_element`): every positive-scaling unit
   with parameters on both sides (ReLU-type) is *balanced*, ``‖incoming‖ = ‖outgoing‖`` — the
   minimum-norm point of the scaling orbit (Neyshabur, Salakhutdinov, Srebro 2015, Path-SGD;
   Du, Hu, Lee 2018 on balancedness); a scale with parameters on one side only (in front of a
   BatchNorm or LayerNorm) fixes that side's norm: 1 per unit for BatchNorm, ``√n`` over the
   ``n`` units of a layer for LayerNorm's common scale (unit RMS row norm). Solved jointly for
   all layers by Newton's method on a strictly convex function, so the answer is the same from
   any point of the orbit.
2. **Signs** (tanh, sigmoid flips, LayerNorm's common sign): in graph order, each unit's
   largest-magnitude incoming entry is made positive.
3. **Permutations**: within each permutation factor (within its blocks, for asymmetric
   networks) units are sorted by their total squared parameter mass over every axis the factor
   moves, largest first; ties by incoming mass, then by current position.

4. **Translations** (softmax shifts, attention key biases; done first): the minimum-norm point
   of each translation orbit, i.e. the parameters' component along the translation removed
   (logit rows centred to mean zero with a mean-zero bias; the key bias set to zero). The
   other steps keep this property (they act linearly on it), so it survives them.

What is *not* canonicalised, honestly: ``GL`` factors (linear activations, attention's
query/key and value/output maps) and internal factors (attention heads) are left as they are,
so the result is a canonical representative only modulo those factors; ties (exactly equal
masses or entries) are broken by position, so exact duplicates of units are fine but
different units with exactly equal keys are not canonical; scalings in front of a
normalisation are symmetries only up to its ``eps`` (the factor is marked inexact), so the
function changes by that much. Buffers (BatchNorm statistics) move with their units but take
no part in the rule.

>>> import symlab as sl, torch
>>> net = sl.nn.MLP([4, 8, 8, 3], seed=0); G = sl.symmetries(net); sd = net.state_dict()
>>> moved = G.act(G.sample(1), sd)
>>> a, b = canonicalize(sd, G), canonicalize(moved, G)
>>> all(torch.allclose(a[k], b[k], atol=1e-5) for k in sd)
True
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from symlab.align.alignment import Alignment
from symlab.align.gauge import canonical_scale_element, canonical_sign_element, sign_factors
from symlab.align.units import factor_axes
from symlab.align.weight_matching import weight_matching
from symlab.symmetry.factors import GroupElement
from symlab.symmetry.group import SymmetryGroup
from symlab.symmetry.spec import Translation

__all__ = [
    "OrbitDistance",
    "canonical_permutation_element",
    "canonical_translation_element",
    "canonicalize",
    "orbit_distance",
]

StateDict = Mapping[str, torch.Tensor]


def canonical_permutation_element(state_dict: StateDict, G: SymmetryGroup) -> GroupElement:
    """The permutation element that sorts every permutation factor's units (within blocks) by
    total squared mass, largest first (ties: incoming mass, then position).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net)
    >>> canon = G.act(canonical_permutation_element(net.state_dict(), G), net.state_dict())
    >>> mass = (canon["layers.0.linear.weight"] ** 2).sum(1) + (canon["head.weight"] ** 2).sum(0)
    >>> bool((mass[:-1] >= mass[1:]).all())
    True
    """
    keys = G.graph.state_keys()
    values = {}
    for name, fas in factor_axes(G).items():
        f = next(x for x in G.factors if x.name == name)
        n = int(f.size)
        total = torch.zeros(n, dtype=torch.float64)
        incoming = torch.zeros(n, dtype=torch.float64)
        for fa in fas:
            x = state_dict[fa.key].detach().double().movedim(fa.axis, 0)[fa.positions]
            m = (x.reshape(n, -1) ** 2).sum(1)
            total += m
            if keys[fa.key][1].axes[fa.axis] == "out":
                incoming += m
        perm = torch.arange(n)
        for block in f.blocks or [tuple(range(n))]:
            b = torch.as_tensor(sorted(block))
            order = sorted(
                range(len(b)), key=lambda i: (-float(total[b[i]]), -float(incoming[b[i]]), i)
            )
            perm[b] = b[torch.as_tensor(order)]
        values[name] = perm
    return G.element(values)


def canonical_translation_element(state_dict: StateDict, G: SymmetryGroup) -> GroupElement:
    """The translation element that moves every translation factor to its minimum-norm point:
    ``t* = -(EᵀE)⁻¹ Eᵀ θ`` (each coordinate of a translation moves its own entries, so
    ``EᵀE`` is diagonal).

    >>> import symlab as sl
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=-1)); G = sl.symmetries(net)
    >>> c = G.act(canonical_translation_element(net.state_dict(), G), net.state_dict())
    >>> bool(c["0.weight"].sum(0).abs().max() < 1e-6), bool(c["0.bias"].sum().abs() < 1e-6)
    (True, True)
    """
    values = {}
    for f in G.factors:
        if f.kind != "translation":
            continue
        tr = G.translation(f.name)
        node = G.graph.node(tr.node)
        params = {p.name: state_dict[node.key(p)].detach().double() for p in node.params}
        values[f.name] = _min_norm_shift(tr, params, int(f.size))
    return G.element(values)


def _min_norm_shift(tr: Translation, params: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    def embed(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        update = tr.embed(t, params)
        return tuple(update[k] for k in sorted(update))

    t0 = torch.zeros(n, dtype=torch.float64)
    _, pullback = torch.func.vjp(embed, t0)
    (et_theta,) = pullback(tuple(params[k] for k in sorted(tr.embed(t0, params))))
    (diag,) = pullback(embed(torch.ones_like(t0)))
    return -et_theta / diag


def canonicalize(
    state_dict: StateDict,
    G: SymmetryGroup,
    *,
    translations: bool = True,
    scales: bool = True,
    signs: bool = True,
    permutations: bool = True,
    return_element: bool = False,
) -> OrderedDict[str, torch.Tensor] | tuple[OrderedDict[str, torch.Tensor], GroupElement]:
    """The canonical representative of ``state_dict``'s orbit under ``G`` (see the module
    docstring for the rule and what it leaves alone).

    Args:
        state_dict: parameters of a model of ``G``'s architecture.
        G: its symmetry group.
        translations, scales, signs, permutations: which steps to run (all by default).
        return_element: also return the element ``h`` with ``G.act(h, state_dict)`` equal to
            the result.

    Returns:
        the canonical state_dict (same keys, dtypes and order), and optionally ``h``.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> moved = G.act(G.sample(0), sd)  # the same function, other weights
    >>> a, b = canonicalize(sd, G), canonicalize(moved, G)
    >>> all(torch.allclose(a[k], b[k], atol=1e-5) for k in sd)
    True
    """
    G.check_state_dict(state_dict)
    h = G.identity()
    sd = OrderedDict(state_dict)
    if translations and any(f.kind == "translation" for f in G.factors):
        h = canonical_translation_element(sd, G)
        sd = G.act(h, sd)
    if scales:
        c = canonical_scale_element(sd, G)
        h = G.compose(c, h)
        sd = G.act(c, sd)
    if signs and sign_factors(G):
        s, _ = canonical_sign_element(sd, G)
        h = G.compose(s, h)
        sd = G.act(s, sd)
    if permutations:
        p = canonical_permutation_element(sd, G)
        h = G.compose(p, h)
        sd = G.act(p, sd)
    return (sd, h) if return_element else sd


@dataclass(frozen=True)
class OrbitDistance:
    """A distance between two orbits (see :func:`orbit_distance`).

    Attributes:
        value: the distance.
        exact: True when ``value`` is the distance between the canonical representatives with
            no discrete factor left to optimise over (pure scaling groups); False when it is an
            upper bound found by weight matching.
        alignment: the weight matching of the two canonical forms (None when not needed).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> d = orbit_distance(sd, G.act(G.sample(0), sd), G, details=True)
    >>> d.value < 1e-5, d.exact, d.alignment is not None
    (True, False, True)
    """

    value: float
    exact: bool
    alignment: Alignment | None

    def __float__(self) -> float:
        return self.value


def _params(G: SymmetryGroup) -> list[str]:
    return [k for k, (_, spec) in G.graph.state_keys().items() if spec.kind == "param"]


def orbit_distance(
    a: StateDict, b: StateDict, G: SymmetryGroup, *, seed: int = 0, details: bool = False
) -> float | OrbitDistance:
    """A distance between the orbits of ``a`` and ``b`` under ``G``.

    Definition: both are brought to canonical scale (the balanced section of the scaling
    orbits, :func:`canonicalize` step 1); the distance is ``min_g ‖c(a) − g·c(b)‖₂`` over the
    group's permutations and signs (which keep the balanced section), on the trainable
    parameters. It is zero for a model and any transformed copy of it, symmetric, and depends
    only on the two orbits.

    Exact for groups with no permutation or sign factor (then ``‖c(a) − c(b)‖``). Otherwise the
    minimum over permutations is NP-hard for three or more layers, and symlab reports an
    **upper bound**: both are fully canonicalised (signs and unit order too) and ``g`` is the
    permutation Git Re-Basin weight matching (:func:`symlab.align.weight_matching`) finds from
    there. GL factors are not
    minimised over (see :func:`canonicalize`), so for them too the value is an upper bound.

    Returns:
        the distance as a float, or an :class:`OrbitDistance` with ``details=True``.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1); G = sl.symmetries(a)
    >>> orbit_distance(a.state_dict(), G.act(G.sample(0), a.state_dict()), G) < 1e-5
    True
    >>> orbit_distance(a.state_dict(), b.state_dict(), G) > 0.1
    True
    """
    ca, cb = canonicalize(a, G), canonicalize(b, G)
    has_perm = bool(factor_axes(G))
    exact = not has_perm and not sign_factors(G) and not any(f.kind == "GL" for f in G.factors)
    al = None
    if has_perm:
        al = weight_matching(ca, cb, G, seed=seed)
        cb = al.apply(cb)
    sq = sum(float(((ca[k].double() - cb[k].double()) ** 2).sum()) for k in _params(G))
    out = OrbitDistance(sq**0.5, exact, al)
    return out if details else out.value
