"""Effective alignment: move B's unit functions into A's slots across effective symmetries.

Structural alignment (weight or activation matching) moves units only within the derived
group; for an asymmetric layer (a mask, fixed values) that group is trivial and structural
alignment does nothing. Bürgin, Herbst, Lin, Jegelka (ICML 2026) observe that on the data's
support units can still exchange their functions: a unit's *effective function class* (the
functions ``F + D ⊙ W`` realises on the support, :mod:`symlab.identify.function_classes`)
often contains another unit's function. Effective matching uses that:

1. structural gauges are removed first (both runs at canonical scale, per-unit sign and
   translation, :func:`symlab.identify.gauge_free`);
2. layer by layer in forward order, B's unit functions (its pre-activations on the data) are
   written on the support of the current layer inputs, and assigned to A's slots by a linear
   assignment (:func:`scipy.optimize.linear_sum_assignment`) under the cross-run cost. With
   ``objective="distance"`` (default) slot ``i`` taking B's unit ``j`` costs
   ``(a^B_j − a^A_i)ᵀ S_i⁺ (a^B_j − a^A_i)`` — the least trainable-norm change from A's
   function in that slot to B's, the effective counterpart of weight matching's distance;
   ``objective="cost"`` uses the realisation cost from the class centre,
   ``C^{AB}_ij = (a^B_j − v_i)ᵀ S_i⁺ (a^B_j − v_i)``, which does not look at A's weights. Either
   way a pair is allowed only where slot ``i`` can realise B's function at all (``C^{AB}_ij``
   finite);
3. the units move (their biases, the parameters of elementwise layers and the next layer's
   columns with them, through the group's own per-tensor maps; units whose outputs pass
   through an op that mixes units, such as a FiGLU gate, keep their slots), and every slot
   whose function changed is **re-realised at least norm inside its own class**: the
   trainable weights (zero on the slot's masked inputs; its fixed part stays) whose
   pre-activations fit the function best on the data, least norm among the best fits
   (``fit_rows`` in :mod:`symlab.identify.effective_matching`) — on the data's span this
   realises it exactly, ``w_i = Diag(d_i) U S_i⁺ (a − v_i)`` — and a bias that restores the
   function's mean. Later layers are re-realised against their new inputs the same way (the
   output layer without a permutation), so the next layer's columns follow;
4. the result is mapped back into A's gauge (the inverse of A's canonicalising element).

B's result lives in A's architecture: where B's masks, fixed parts or gates differ from A's (a
re-masked copy), A's are used and every function is re-realised in A's slots.

On the support the re-realised function equals B's up to what lies off the support or outside
a slot's class: ``residual`` reports the relative change of B's outputs on the data, and every
layer its own. By default the support is the data's whole span, so a function moves only into
a slot that realises it exactly (for a W-asymmetric layer on full-rank inputs: only within its
own mask, where nothing moves); a smaller ``explained_variance`` lets functions move across
masks where they agree on the directions carrying that share of the variance, at the price of
the residual (E8 reports both).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from symlab.symmetry.group import SymmetryGroup

__all__ = ["EffectiveLayer", "EffectiveMatching", "effective_matching"]


@dataclass(frozen=True)
class EffectiveLayer:
    """What effective matching did to one layer.

    Attributes:
        layer: the module path.
        permutation: ``perm[i]``: B's unit whose function slot ``i`` now holds (identity for
            layers whose units are not matched, such as the output layer).
        moved: units placed in another slot; realised: slots re-realised.
        unreachable: slots whose target lay outside their class (its projection was realised).
        cost: total assignment cost; identity_cost: the identity's.
        residual: relative RMS change of the layer's pre-activations on the data against the
            functions it should hold.

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 6, 2], seed=0)
    >>> lay = effective_matching(a, a, torch.randn(64, 4)).layers["layers.0.linear"]
    >>> lay.moved, lay.realised, lay.residual
    (0, 0, 0.0)
    """

    layer: str
    permutation: torch.Tensor
    moved: int
    realised: int
    unreachable: int
    cost: float
    identity_cost: float
    residual: float


@dataclass(frozen=True, eq=False)
class EffectiveMatching:
    """The result of :func:`effective_matching`: B's new parameters and what changed.

    Attributes:
        state_dict: B's parameters after effective alignment (A's gauge, same keys).
        residual: relative RMS change of B's outputs on the data (0: the function on the
            support is unchanged).
        layers: per layer (module path), an :class:`EffectiveLayer`.
        objective: ``"distance"`` or ``"cost"``.
        info: diagnostics (supports' dimensions, the data rows used).

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([4, 6, 2], seed=0), sl.nn.MLP([4, 6, 2], seed=1)
    >>> eff = effective_matching(a, b, torch.randn(128, 4))
    >>> eff.residual < 1e-4, sorted(eff.layers)
    (True, ['head', 'layers.0.linear'])
    """

    state_dict: OrderedDict[str, torch.Tensor]
    residual: float
    layers: dict[str, EffectiveLayer]
    objective: str
    info: dict[str, Any] = field(default_factory=dict)

    def apply_model(self, model_b: nn.Module) -> nn.Module:
        """A copy of ``model_b`` with the aligned parameters."""
        out = copy.deepcopy(model_b)
        out.load_state_dict(self.state_dict)
        return out

    @property
    def permutations(self) -> dict[str, torch.Tensor]:
        """Per matched layer, the permutation of B's units."""
        return {k: v.permutation for k, v in self.layers.items()}


def effective_matching(
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
    """Align ``model_b`` to ``model_a`` across effective symmetries on ``data`` (a Dataset's
    ``split``, an input tensor or ``(x, y)``); see the module docstring.

    The algorithm lives in :mod:`symlab.identify.effective_matching`, beside the function
    classes it is built from (imported when called, so ``symlab.align`` stays below
    ``symlab.identify`` in the import layers); this is its public name.

    Args:
        model_a, model_b: two runs of one architecture whose matched layers are linear or
            convolutional modules (standard or W-asymmetric).
        G: the derived group of ``model_a`` (derived when None).
        objective: ``"distance"`` (A's function in the slot as the centre) or ``"cost"``
            (the realisation cost ``C^{AB}`` from the class centre).
        explained_variance, k: the supports of the layer inputs. The default keeps every
            direction of the data but those carrying the last 1e-8 of its variance (below
            float32 noise), so re-realised functions equal B's on the data; a smaller value
            frees more moves but changes the functions off the support (see ``residual``).
        gauges: remove the structural gauges first (and map back into A's gauge).

    Returns:
        an :class:`EffectiveMatching` (B's new ``state_dict`` and the support residual).

    Raises:
        DataError: the data do not fit the models.
        ArchitectureMismatchError: the models' parameters differ in names or shapes.

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 6, 2], seed=0)
    >>> eff = effective_matching(a, a, torch.randn(64, 4))  # a model with itself
    >>> eff.residual, all(torch.equal(eff.state_dict[k], v) for k, v in a.state_dict().items())
    (0.0, True)
    """
    from symlab.identify.effective_matching import match  # the public re-export (see above)

    return match(model_a, model_b, data, G, objective=objective, k=k, split=split,
                 explained_variance=explained_variance, gauges=gauges)  # fmt: skip
