"""Rules for elementwise ops beyond the activation table: powers, clamps, PReLU, elementwise
maxima and padding.

Each follows from the intertwiner condition ``σ(A x) = B σ(x)`` (Godfrey et al., "On the
Symmetries of Deep Learning Models and their Internal Representations", NeurIPS 2022) for the
op's own ``σ``; the derivations are in ``docs/concepts/symmetries.md``:

* ``pow`` (``x ** p``, ``torch.square``): ``(s x)^p = s^p x^p`` for ``s = ±1``, so odd powers
  pass sign flips through (like tanh) and even powers absorb them (the output does not move);
  ``(c x)^p = c^p x^p`` would need the consumer to absorb ``c^p``, which symlab does not
  derive, so no scaling (fail closed). Other exponents: permutations only.
* ``clamp`` (``torch.clamp``, ``F.hardtanh``): ``clamp(c x, a, b) = c clamp(x, a/c, b/c)`` for
  ``c > 0``, so positive scalings pass exactly when ``a, b ∈ {0, ±∞}``;
  ``clamp(-x, a, b) = -clamp(x, -b, -a)``, so sign flips pass exactly when ``a = -b``.
* ``prelu``: ``max(0, cx) + α min(0, cx) = c prelu(x)`` for ``c > 0``: positive scalings; a
  per-channel slope ``α_i`` moves with its channel.
* ``maximum``: ``max(c a, c b) = c max(a, b)`` for ``c > 0``: the operands and the result share
  one permutation and positive scaling.
* ``pad`` on positions: zero, reflect, replicate and circular padding are linear and act on
  each channel alike, so any invertible map of the channels commutes with them; a non-zero
  constant commutes with permutations only.
"""

from __future__ import annotations

import math

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import ANY, NONE, Admits, Mag, OpSymmetry, Sign
from symlab.symmetry.transform import Transform

__all__ = ["FRESH_OPS", "clamp_admits", "fresh_space"]

Params = dict[str, torch.Tensor]

#: Ops whose output is a space of its own (tied to none of their inputs): a tensor they make
#: is never a block (concatenation) tensor at the op's own rule.
FRESH_OPS = frozenset(
    {"linear", "linear_t", "conv", "conv_transpose", "embedding", "wasym_linear", "wasym_conv",
     "mha", "attention_linear", "attention_fused"}
)  # fmt: skip

SIGNS = Admits(Mag.NONE, Sign.DIAG)
POSITIVE = Admits(Mag.DIAG, Sign.NONE)


def _x(node: Node, graph: ArchGraph) -> str:
    return graph.inputs(node.name)[0]


def fresh_space(graph: ArchGraph, t: str) -> bool:
    """Whether ``t`` is made by an op of :data:`FRESH_OPS` (so, at first, a plain space).

    >>> import symlab as sl
    >>> graph = sl.symmetries(sl.nn.MLP([3, 4, 2])).graph
    >>> fresh_space(graph, "layers.0.linear"), fresh_space(graph, "layers.0.act")
    (True, False)
    """
    return graph.node(t).op in FRESH_OPS


@rule("pow")
def pow_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``y = x ** p`` (``attrs['exponent']``): odd integer ``p`` passes sign flips through; even
    ``p`` absorbs them (``y`` stays put: only permutations move it); ``p = 1`` is the identity;
    any other ``p`` (fractional, 0): permutations only. Never positive scalings (``c^p``)."""
    x = _x(node, graph)
    p = float(node.attrs["exponent"])
    if p == 1.0:
        return OpSymmetry(tie=[(x, node.name)])
    if p.is_integer() and p != 0.0 and int(p) % 2 == 1:
        return OpSymmetry(tie=[(x, node.name)], admits=[(x, SIGNS, f"odd power {p:g}")])
    if p.is_integer() and p != 0.0 and fresh_space(graph, x):
        return OpSymmetry(
            tie_perm=[(x, node.name)],
            admits=[(x, SIGNS, f"even power {p:g}: (-x)^p = x^p"), (node.name, NONE, "power")],
        )
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, NONE, f"power {p:g}")])


def clamp_admits(lo: float, hi: float) -> Admits:
    """What ``clamp(x, lo, hi)`` admits on its units (permutations always): positive scalings
    when both bounds are 0 or infinite, sign flips when ``lo = -hi`` (an odd function).

    >>> clamp_admits(0.0, math.inf) == POSITIVE, clamp_admits(-1.0, 1.0) == SIGNS
    (True, True)
    >>> clamp_admits(0.0, 6.0) == NONE, clamp_admits(-math.inf, math.inf) == ANY
    (True, True)
    """
    if lo > hi or math.isnan(lo) or math.isnan(hi):
        return NONE  # torch returns hi everywhere: a constant (permutations are still fine)
    if lo == -math.inf and hi == math.inf:
        return ANY  # no bound at all: the identity
    mag = Mag.DIAG if lo in (0.0, -math.inf) and hi in (0.0, math.inf) else Mag.NONE
    sign = Sign.DIAG if lo == -hi else Sign.NONE
    return Admits(mag, sign)


@rule("clamp")
def clamp_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``clamp(x, lo, hi)`` with constant bounds (``attrs['lo']``, ``attrs['hi']``, ±inf when
    absent): see :func:`clamp_admits`."""
    x = _x(node, graph)
    lo, hi = float(node.attrs.get("lo", -math.inf)), float(node.attrs.get("hi", math.inf))
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, clamp_admits(lo, hi), "clamp")])


@rule("prelu")
def prelu_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """PReLU: positively homogeneous, so permutations and positive scalings; a per-channel
    slope moves with its channel (its own values never scale)."""
    x = _x(node, graph)
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, POSITIVE, "prelu")])


@prelu_rule.action
def _prelu_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    w = params["weight"]
    if node.attrs.get("per_channel") and t_out.perm is not None:
        w = w.index_select(0, t_out.perm)
    return dict(params, weight=w)


@rule("maximum")
def maximum_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Elementwise ``max(a, b)`` (or ``min``) of aligned tensors: ``max(c a, c b) = c max(a, b)``
    for ``c > 0``, so every operand and the result share one permutation and positive scaling.
    With one input (``max(x, x)``, the same tensor twice) it is the identity."""
    ins = graph.inputs(node.name)
    if len(ins) == 1:
        return OpSymmetry(tie=[(ins[0], node.name)])
    return OpSymmetry(
        tie=[(t, node.name) for t in ins], admits=[(t, POSITIVE, "elementwise max") for t in ins]
    )


@rule("pad")
def pad_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Padding of positions (never of the units): zero, reflect, replicate or circular padding
    commutes with any invertible map of the channels; a non-zero constant with permutations
    only (``attrs['mode']``, ``attrs['value']``)."""
    x = _x(node, graph)
    linear = (
        node.attrs.get("mode", "constant") != "constant"
        or float(node.attrs.get("value", 0.0)) == 0.0
    )
    return OpSymmetry(
        tie=[(x, node.name)], admits=[(x, ANY if linear else NONE, "padding of positions")]
    )
