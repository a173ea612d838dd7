"""How translation factors (softmax shifts, attention key biases) act, compose and invert.

An element is ``(g, t)``: the rest of the group ``g`` acts first, then every translation adds
``E t`` to its node's parameters, ``θ ↦ g·θ + E t``. ``g`` acts affinely, so
``(g₁, t₁)(g₂, t₂) = (g₁g₂, t₁ + L_{g₁} t₂)`` and ``(g, t)⁻¹ = (g⁻¹, -L_{g⁻¹} t)``, where the
linear part ``L_g`` is computed from the node's own action: ``g·(0 + E t) - g·0``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

from symlab.symmetry.factors import GroupElement

if TYPE_CHECKING:
    from symlab.symmetry.group import SymmetryGroup

__all__ = ["add_translations", "linear_part"]


def add_translations(
    G: SymmetryGroup, h: GroupElement, out: OrderedDict[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """Add every translation ``E t`` of ``h`` to the parameters ``out`` (already moved by the
    rest of ``h``)."""
    for name, tr in G._st.translations.items():
        node = G.graph.node(tr.node)
        keys = {p.name: node.key(p) for p in node.params}
        params = {p: out[k] for p, k in keys.items()}
        for p, update in tr.embed(h[name], params).items():
            out[keys[p]] = out[keys[p]] + update.to(out[keys[p]].dtype)
    return out


def linear_part(G: SymmetryGroup, g: GroupElement, h: GroupElement) -> dict[str, torch.Tensor]:
    """Per translation factor, the coordinates of ``L_g(E t)``: the linear part of ``g``'s
    action applied to ``h``'s translation ``E t`` (the action is affine, so it is
    ``g·(0 + E t) - g·0`` on the node's parameters alone)."""
    transforms, internal = G._element_transforms(g), G._internal(g)
    out = {}
    for name, tr in G._st.translations.items():
        node = G.graph.node(tr.node)
        zero = {
            p.name: torch.zeros([int(d) for d in p.shape], dtype=torch.float64)
            for p in node.params
            if p.kind != "fixed"
        }
        update = tr.embed(h[name], zero)
        moved = {k: zero[k] + update[k] if k in update else zero[k] for k in zero}
        a = G._act_node(node, moved, transforms, internal)
        b = G._act_node(node, zero, transforms, internal)
        out[name] = tr.project({k: a[k] - b[k] for k in a})
    return out
