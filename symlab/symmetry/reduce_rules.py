"""Rules for normalisations without parameters and reductions: ``F.normalize``, p-norms and
maxima (``amax``, ``max``, ``amin``, ``min``).

A p-norm ``‖x‖_p = (Σ |x_i|^p)^{1/p}`` is unchanged by permuting and sign-flipping its terms,
so (derivations in ``docs/concepts/symmetries.md``):

* ``normalize`` (``x / max(‖x‖_p, eps)`` along any axes): ``x ↦ P S x`` gives ``y ↦ P S y``
  exactly (the norm does not change), whether the norm runs over the units (one norm per
  sample) or over positions (one per unit). Signed permutations pass through; no scaling
  (a common scale of the input is divided out only up to ``eps``: not derived).
* ``norm`` over the units: the result is invariant (fixed) and the input admits signed
  permutations; over other axes (one norm per unit), ``‖c x_i‖ = c ‖x_i‖`` for ``c > 0``:
  permutations and positive scalings pass through, signs are absorbed (not derived).
* ``reduce_max`` over the units: ``max_i x_i`` is invariant under permutations of ``i`` (the
  result is fixed; the input admits permutations only: ``max(c x) = c max(x)`` would move the
  result). Maxima over positions are ``pool_max``.
"""

from __future__ import annotations

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.elementwise_rules import POSITIVE, SIGNS
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import NONE, OpSymmetry

__all__: list[str] = []


def _x(node: Node, graph: ArchGraph) -> str:
    return graph.inputs(node.name)[0]


@rule("normalize")
def normalize_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``x / max(‖x‖_p, eps)`` (``F.normalize``, or written by hand): signed permutations pass
    through, exactly."""
    x = _x(node, graph)
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, SIGNS, "p-norm normalisation")])


@rule("norm")
def norm_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """A p-norm (``attrs['over_units']``: over the units, else over other axes, unit by unit)."""
    x = _x(node, graph)
    if node.attrs.get("over_units"):
        return OpSymmetry(fixed=[node.name], admits=[(x, SIGNS, "p-norm over the units")])
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, POSITIVE, "p-norm of each unit")])


@rule("reduce_max")
def reduce_max_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """A maximum (or minimum) over the units: the result is fixed, the units may permute."""
    x = _x(node, graph)
    return OpSymmetry(fixed=[node.name], admits=[(x, NONE, "maximum over the units")])
