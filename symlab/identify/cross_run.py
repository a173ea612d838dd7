"""Cross-run identifiability from effective function classes (Bürgin et al., ICML 2026).

For two runs A and B of one architecture, per layer of hidden units:

1. **Structural gauges are removed first** with the derived group (:func:`gauge_free`): both
   runs are brought to canonical scale, per-unit sign and translation
   (:func:`symlab.connect.canonicalize` without its permutation step), so a rescaled or
   sign-flipped copy of a run is recognised as the same run. ``GL`` factors (linear
   activations) and common signs are not canonicalised (see :func:`gauge_free`).
2. B's unit functions are written on A's input support: the pre-activations of B's units over
   the data, regressed on A's centred layer inputs restricted to the support ``U`` — for the
   first layer exactly ``a^B_j = Uᵀ w^B_eff,j``; deeper, B's function in A's coordinates
   whatever order B's earlier units are in.
3. Two cross-run costs, each solved as an assignment (:func:`scipy.optimize.linear_sum_assignment`)
   with per-unit margins (:mod:`symlab.identify.assignment`):

   - the **move cost** ``D_ij = (a^B_j − a^A_i)ᵀ S_i⁺ (a^B_j − a^A_i)``: the least trainable-norm
     change that takes A's slot ``i`` from the function A realises there to B's unit ``j``
     (allowed only where the class can hold that function at all, ``C^{AB}_ij < ∞``). It
     decides ``score``, ``permutation`` and ``margins``: the identity is optimal exactly when
     B's functions already sit in the slots of A that are nearest in the effective geometry,
     so a run against itself, or against a rescaled, sign-flipped or mask-permuted copy of
     itself, scores 1 (and the copy's permutation is recovered);
   - the **realisation cost** ``C^{AB}_ij = (a^B_j − v_i)ᵀ S_i⁺ (a^B_j − v_i)`` from the class
     centre (the paper's formula, A's class ``i`` realising B's unit ``j``): ``class_score`` is
     1 when B's functions sit where A's classes realise them most cheaply. It does not look at
     A's weights, so it is 1 for A against itself only if A is itself at its cost optimum, and
     a layer whose classes cannot tell units apart (a standard layer: one shared class, every
     assignment costs the same) is ``degenerate`` with ``class_score`` 0.

   Both scores are ``clip((random − identity) / (random − optimal), 0, 1)`` with ``random`` the
   expected cost of a uniformly random assignment over each row's finite entries: 1 when the
   identity is optimal (also when it is the only finite assignment), 0 when it is no better
   than chance.

Beside it, on the **raw** parameters (gauges included — unaligned merging depends on them):
the *effective distance* at the identity, ``δ_i = (a^B_i − a^A_i)ᵀ S_i⁺ (a^B_i − a^A_i)``, the
least trainable-norm change moving A's slot ``i`` onto B's function, and its ratio to the two
runs' own costs, ``ρ = Σ δ_i / Σ (C^{AA}_ii + C^{AB}_ii)`` (0: the runs realise the same
functions; ≈ 1: unrelated displacements within each class); and the *function distance*
``φ = Σ ‖a^A_i − a^B_i‖²_Λ / Σ (‖a^A_i‖²_Λ + ‖a^B_i‖²_Λ)`` with ``Λ`` the support's variances
(the relative squared difference of the two runs' pre-activations on the support).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from symlab.identify.assignment import min_cost_assignment, permutation_margins
from symlab.identify.consumer import consumer_checks
from symlab.identify.function_classes import function_classes_from_weights
from symlab.identify.layers import (
    check_pair,
    layer_io,
    layer_parts,
    support_coefficients,
)
from symlab.identify.support import support as make_support
from symlab.progress import progress as progress_items
from symlab.symmetry.factors import GroupElement
from symlab.symmetry.group import SymmetryGroup

__all__ = [
    "FunctionClassLayer",
    "function_class_identifiability",
    "function_class_layers",
    "gauge_distortion",
    "gauge_free",
]


@dataclass(frozen=True)
class FunctionClassLayer:
    """Function-class identifiability of one layer of two runs (see the module docstring).

    Attributes:
        space: the layer (its space of units).
        width: number of units.
        identity / optimal / random: total move cost of the identity, of the optimal
            assignment and (expected) of a random one.
        score: in [0, 1]; 1 when the identity is an optimal assignment under the move cost.
        permutation: the optimal assignment (``perm[i]``: B's unit placed in A's slot ``i``).
        margins: (n,) least excess move cost of a permutation moving each unit, relative to
            the mean self cost ``C^{AA}_ii``.
        class_score: the same score under the realisation cost ``C^{AB}`` from the class
            centre (the paper's formula).
        degenerate: the classes cannot tell the units apart (``class_score`` 0).
        unexplained: (n,) fraction of B's pre-activation variance off A's support.
        distance: ρ, the relative effective distance at the identity (raw parameters).
        function_distance: φ, the relative pre-activation distance (raw parameters).
        coherence: ν(U) of A's layer-input support; k: its dimension.
        fixed_share: fraction of A's pre-activation variance on the support carried by the
            fixed part ``F`` (0 for standard and κ = 0 layers; grows with κ).
        gauge_ratio: (n,) per unit, B's gauge relative to A's: ``r_i`` with B's unit ``i`` equal
            (up to its gauge-free form) to ``r_i`` times A's — a positive scale, or negative for
            a sign flip (1 where the layer has no gauge or ``gauges=False``).
        gauge_distortion: mean over units of ``|(1 + r_i)(1 + 1/r_i)/4 − 1|``, how far the
            unaligned midpoint's gain of a unit is from 1 because of the gauge mismatch alone
            (a unit scaled by ``r`` in and ``1/r`` out: ``((1 + r)/2)·((1 + 1/r)/2)``; 1 for
            ``r = 1``, 0 for a sign flip).
        shared_consumer: the rest of the network is the same function of this layer's output
            in both runs and along their unaligned path, so the layer's slot order cannot make a
            barrier (:func:`symlab.identify.consumer_check`; raw parameters).
        bending: where the consumer is shared, the midpoint's output defect through it,
            ``E‖f(z̄) − (f(z_A) + f(z_B))/2‖²`` (NaN otherwise).

    >>> import symlab as sl
    >>> a = sl.nn.MLP([5, 8, 2], asym={"num_fixed": 2, "kappa": 1.0}, seed=0)
    >>> lay = function_class_identifiability(a, a, torch.randn(256, 5))["layers.0.linear"]
    >>> lay.score, lay.class_score, lay.permutation.tolist() == list(range(8)), lay.distance < 1e-12
    (1.0, 1.0, True, True)
    """

    space: str
    width: int
    identity: float
    optimal: float
    random: float
    score: float
    permutation: torch.Tensor
    margins: torch.Tensor
    class_score: float
    degenerate: bool
    unexplained: torch.Tensor
    distance: float
    function_distance: float
    coherence: float
    k: int
    fixed_share: float
    gauge_ratio: torch.Tensor
    gauge_distortion: float
    shared_consumer: bool = False
    bending: float = float("nan")

    def identifiable(self, rel_eps: float = 0.01) -> torch.Tensor:
        """(n,) bool: every permutation moving the unit costs more than ``rel_eps`` × the mean
        self cost."""
        return self.margins > rel_eps

    def identifiable_fraction(self, rel_eps: float = 0.01) -> float:
        """The fraction of units that are identifiable across the runs."""
        return float(self.identifiable(rel_eps).double().mean())


def function_class_layers(model: nn.Module, G: SymmetryGroup) -> list[str]:
    """The layers (module paths) whose units function classes describe: the producers of
    ``G``'s unit spaces with more than one unit that are linear or convolutional modules
    (standard or W-asymmetric).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([4, 8, 8, 2])
    >>> function_class_layers(net, sl.symmetries(net))
    ['layers.0.linear', 'layers.1.linear']
    """
    out = []
    names = dict(model.named_modules())
    for f in G.unit_spaces():
        if int(f.size) < 2 or f.space not in names:
            continue
        m = names[f.space]
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d) or (
            hasattr(m, "mask") and hasattr(m, "fixed") and hasattr(m, "weight")
        ):
            out.append(f.space)
    return out


def gauge_free(
    state_dict: Mapping[str, torch.Tensor], G: SymmetryGroup
) -> tuple[OrderedDict[str, torch.Tensor], GroupElement]:
    """``state_dict`` with its structural gauges removed, and the element ``h`` doing it
    (``G.act(h, state_dict)``): canonical translations and scales
    (:func:`symlab.connect.canonicalize`, no permutations) and the canonical per-unit signs.
    *Common* signs (one ±1 for a whole layer, as after a LayerNorm) stay as they are: their
    canonical choice hangs on one entry of one unit, a coin flip between independent runs that
    would turn every unit of one run against the other's.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], activation="tanh", seed=0); G = sl.symmetries(net)
    >>> h = G.sample(0); h = G.element({"sign[layers.0.linear]": h["sign[layers.0.linear]"]})
    >>> sd = net.state_dict(); moved = G.act(h, sd)  # a sign-flipped copy...
    >>> a, b = gauge_free(sd, G)[0], gauge_free(moved, G)[0]
    >>> all(torch.allclose(a[k], b[k], atol=1e-5) for k in sd)  # ... recognised as the same
    True
    """
    from symlab.align.gauge import canonical_sign_element, sign_factors
    from symlab.connect.canonical import canonicalize

    sd, h = canonicalize(state_dict, G, permutations=False, signs=False, return_element=True)
    per_unit = [f for f in sign_factors(G) if not f.kind.startswith("common")]
    if per_unit:
        s, _ = canonical_sign_element(sd, G)
        s = G.element({f.name: s[f.name] for f in per_unit})
        sd, h = G.act(s, sd), G.compose(s, h)
    return sd, h


def _gauge_free(model: nn.Module, G: SymmetryGroup) -> nn.Module:
    out = copy.deepcopy(model)
    out.load_state_dict(gauge_free(model.state_dict(), G)[0])
    return out


def _gauge_scale(raw: torch.Tensor, canon: torch.Tensor) -> torch.Tensor:
    """Per unit ``s_i`` with ``canon_i = s_i · raw_i`` (rows of the producer's weight)."""
    r, c = raw.double(), canon.double()
    den = (r**2).sum(1)
    return torch.where(den > 0, (r * c).sum(1) / den.clamp_min(1e-300), torch.ones_like(den))


def gauge_distortion(ratio: torch.Tensor) -> float:
    """Mean ``|(1 + r)(1 + 1/r)/4 − 1|`` over per-unit gauge ratios ``r`` (see
    :class:`FunctionClassLayer`).

    >>> gauge_distortion(torch.tensor([1.0, 1.0])), gauge_distortion(torch.tensor([-1.0]))
    (0.0, 1.0)
    """
    r = ratio.double()
    r = torch.where(r.abs() < 1e-12, torch.full_like(r, 1e-12), r)
    return float(((1 + r) * (1 + 1 / r) / 4 - 1).abs().mean())


def _random_cost(c: np.ndarray) -> float:
    """Expected cost of a uniformly random assignment, over the finite entries of each row."""
    finite = np.isfinite(c)
    rows = np.where(finite, c, 0.0).sum(1) / np.maximum(finite.sum(1), 1)
    return float(rows.sum())


def _score(
    identity: float, optimal: float, rand: float, c: np.ndarray, *, ties_degenerate: bool
) -> tuple[float, bool]:
    """``(score, degenerate)``: 1 when the identity is optimal; with ``ties_degenerate``, 0
    when every assignment costs the same (the classes cannot tell units apart)."""
    scale = max(abs(identity), abs(rand), 1e-300)
    if ties_degenerate and bool(np.isfinite(c).all()) and rand - optimal <= 1e-9 * scale:
        return 0.0, True
    if identity - optimal <= 1e-9 * scale:
        return 1.0, False
    gap = rand - optimal
    return (float(np.clip((rand - identity) / gap, 0.0, 1.0)) if gap > 0 else 0.0), False


def _layer(
    io_a: tuple[torch.Tensor, torch.Tensor],
    io_b: tuple[torch.Tensor, torch.Tensor],
    parts: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    explained_variance: float,
    k: int | None,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """``C^{AB}``, the move cost ``D``, the unexplained fractions of B's functions, A's classes
    and both runs' coefficients on A's support."""
    (xa, za), (_, zb) = io_a, io_b
    supp = make_support(xa, explained_variance, k=k)
    fc = function_classes_from_weights(parts[0], supp, parts[1], parts[2])
    a_a, _ = support_coefficients(xa, za, supp)
    a_b, unexplained = support_coefficients(xa, zb, supp)
    c = fc.cost(a_b)
    d = fc.cost(a_b, centres=a_a, reach=False).masked_fill(~torch.isfinite(c), float("inf"))
    return c.numpy(), d.numpy(), unexplained, fc, a_a, a_b


def function_class_identifiability(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    G: SymmetryGroup | None = None,
    *,
    explained_variance: float = 0.9,
    k: int | None = None,
    gauges: bool = True,
    progress: bool | None = None,
) -> dict[str, FunctionClassLayer]:
    """Per layer, the cross-run function-class identifiability of ``model_b`` against
    ``model_a`` on the inputs ``x`` (see the module docstring). ``gauges=False`` skips the
    gauge removal (scores then see rescaled copies as different runs); ``progress``: a bar
    over the layers (default: only when stderr is a terminal; see :mod:`symlab.progress`).

    >>> import symlab as sl
    >>> a = sl.nn.MLP([5, 8, 2], seed=0); b = sl.nn.MLP([5, 8, 2], seed=1)
    >>> lay = function_class_identifiability(a, b, torch.randn(256, 5))["layers.0.linear"]
    >>> lay.score < 0.9, lay.degenerate, lay.class_score  # standard units share one class
    (True, True, 0.0)
    """
    G = check_pair(model_a, model_b, x, G, argument="x")
    layers = function_class_layers(model_a, G)
    ca, cb = (_gauge_free(model_a, G), _gauge_free(model_b, G)) if gauges else (model_a, model_b)
    io_a, io_b = layer_io(ca, x, layers), layer_io(cb, x, layers)
    raw_a, raw_b = (layer_io(model_a, x, layers), layer_io(model_b, x, layers)) if gauges else (
        io_a, io_b)  # fmt: skip
    consumers = consumer_checks(model_a, model_b, x, layers)
    out = {}
    for name in progress_items(layers, progress, "identifiability: function classes"):
        c, d, unexplained, fc, _, _ = _layer(
            io_a[name], io_b[name], layer_parts(ca, name), explained_variance, k
        )
        m = permutation_margins(d)
        self_cost = max(float(torch.diagonal(fc.realization_cost()).mean()), 1e-300)
        rand = _random_cost(d)
        score, _ = _score(m.identity, m.optimal, rand, d, ties_degenerate=False)
        _, cbest = min_cost_assignment(c)
        class_score, degenerate = _score(float(np.trace(c)), cbest, _random_cost(c), c,
                                         ties_degenerate=True)  # fmt: skip
        # raw parameters: the effective and the function distance at the identity
        c_raw, _, _, fc_raw, ra, rb = _layer(
            raw_a[name], raw_b[name], layer_parts(model_a, name), explained_variance, k
        )
        delta = fc_raw.move_cost(ra, rb)
        own = torch.diagonal(fc_raw.realization_cost()) + torch.from_numpy(np.diag(c_raw).copy())
        dist = float(delta.sum() / own.sum().clamp_min(1e-300))
        lam = fc_raw.support.spectrum[: fc_raw.support.k].double()
        num = (((ra - rb) ** 2) * lam).sum()
        den = ((ra**2 + rb**2) * lam).sum().clamp_min(1e-300)
        fixed = ((fc_raw.v**2) * lam).sum() / ((ra**2) * lam).sum().clamp_min(1e-300)
        consumer = consumers[name]
        ratio = torch.ones(fc.n, dtype=torch.float64)
        if gauges:
            s_a = _gauge_scale(layer_parts(model_a, name)[0], layer_parts(ca, name)[0])
            s_b = _gauge_scale(layer_parts(model_b, name)[0], layer_parts(cb, name)[0])
            ratio = s_a / torch.where(s_b == 0, torch.ones_like(s_b), s_b)
        out[name] = FunctionClassLayer(
            space=name, width=fc.n, identity=m.identity, optimal=m.optimal, random=rand,
            score=score, permutation=torch.from_numpy(m.perm),
            margins=torch.from_numpy(m.margins) / self_cost, class_score=class_score,
            degenerate=degenerate, unexplained=unexplained,
            distance=dist, function_distance=float(num / den),
            coherence=fc_raw.support.coherence, k=fc_raw.support.k,
            fixed_share=float(fixed.clamp(max=1.0)), gauge_ratio=ratio,
            gauge_distortion=gauge_distortion(ratio),
            shared_consumer=consumer.shared, bending=consumer.bending,
        )  # fmt: skip
    return out
