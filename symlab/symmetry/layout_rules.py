"""Rules for ops that move units between channels and positions, or split them: transposed
convolutions, pixel (un)shuffle and GLU.

* ``conv_transpose`` (``groups = 1``) is linear in its input channels and its output channels:
  any invertible map on either side (``W ↦ W`` contracted by ``A⁻¹`` along input channels and
  moved by ``B`` along output channels). A shift of the input is *not* absorbed by the bias (a
  constant input gives a non-constant output near the borders). Grouped: both sides fixed.
* ``pixel_unshuffle(r)``: output channel ``c r² + k`` is input channel ``c`` at sub-position
  ``k``, so a channel map ``A`` becomes the block map ``A ⊗ I_{r²}`` of the output (like a
  flatten after a convolution). ``pixel_shuffle(r)`` is its inverse: its *input* is the block
  tensor of its output. That is derived only where the input is a space of its own read by the
  shuffle alone (a convolution right before it); elsewhere both sides are fixed (sound).
* ``glu`` over the units: ``y = a ⊙ σ(b)`` with ``x = [a; b]``: ``a`` and ``y`` share any
  monomial map (permutation, positive scaling, sign), ``b`` only the permutation (a gate). The
  gate half is a ``glu_gate`` node so that ``x`` can be the block tensor ``[y; gate]``; again
  derived only where ``x`` is a space of its own read by the GLU alone. Over positions (not the
  units): permutations only.
* ``split_part``: one part of ``x`` cut along its units (``split``, ``chunk``, slices:
  GEGLU's ``h, gate = proj(x).chunk(2, dim=-1)``). Where the parts cover ``x`` exactly, each
  once, and nothing else reads ``x`` (a space of its own: a linear map or convolution right
  before), ``x`` is the block tensor of its parts, each moving with its own map; elsewhere ``x``
  and the parts are fixed (sound).
"""

from __future__ import annotations

import torch

from symlab.errors import UnsupportedOpError
from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.elementwise_rules import fresh_space
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import ANY, NONE, Admits, Mag, OpSymmetry, Sign
from symlab.symmetry.transform import Transform

__all__: list[str] = []

Params = dict[str, torch.Tensor]


def _x(node: Node, graph: ArchGraph) -> str:
    return graph.inputs(node.name)[0]


@rule("conv_transpose")
def conv_transpose_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``ConvTranspose1d/2d/3d``: weight ``(C_in, C_out / groups, *kernel)``."""
    x = _x(node, graph)
    if int(node.attrs.get("groups", 1)) != 1:
        return OpSymmetry(fixed=[x, node.name])
    return OpSymmetry(
        admits=[(x, ANY, "transposed conv input"), (node.name, ANY, "transposed conv output")]
    )


@conv_transpose_rule.action
def _conv_transpose_act(
    node: Node, params: Params, t_in: list[Transform], t_out: Transform
) -> Params:
    if int(node.attrs.get("groups", 1)) != 1:
        return dict(params)
    out = dict(params, weight=t_out.out(t_in[0].contract(params["weight"], 0), 1))
    if "bias" in params:
        out["bias"] = t_out.out(params["bias"], 0)
    return out


def _owned_block_input(graph: ArchGraph, node: Node, x: str, readers: set[str]) -> bool:
    """``x`` may be declared the block tensor of ``node``'s outputs: a space of its own that
    only ``readers`` read."""
    return fresh_space(graph, x) and set(graph.consumers(x)) == readers


@rule("pixel_shuffle")
def pixel_shuffle_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``(B, C r², H, W) → (B, C, H r, W r)``: the input is the block tensor of the output
    (each output channel owns ``r²`` consecutive input channels)."""
    x = _x(node, graph)
    r2 = int(node.attrs["factor"]) ** 2
    if r2 == 1:
        return OpSymmetry(tie=[(x, node.name)])
    if _owned_block_input(graph, node, x, {node.name}):
        return OpSymmetry(composite={x: [node.name]}, repeat={x: r2})
    return OpSymmetry(fixed=[x, node.name])


@rule("pixel_unshuffle")
def pixel_unshuffle_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``(B, C, H r, W r) → (B, C r², H, W)``: the output is the block tensor of the input."""
    x = _x(node, graph)
    r2 = int(node.attrs["factor"]) ** 2
    if r2 == 1:
        return OpSymmetry(tie=[(x, node.name)])
    return OpSymmetry(composite={node.name: [x]}, repeat={node.name: r2})


@rule("glu")
def glu_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``F.glu``: over the units, inputs ``[x, gate]`` (``gate`` a ``glu_gate`` node naming the
    second half of ``x``); over another axis, input ``[x]``."""
    ins = graph.inputs(node.name)
    if len(ins) == 1:
        return OpSymmetry(tie=[(ins[0], node.name)], admits=[(ins[0], NONE, "glu on positions")])
    x, gate = ins
    if graph.node(gate).op != "glu_gate":
        raise UnsupportedOpError(f"node {node.name!r}: a glu over the units needs its glu_gate")
    if _owned_block_input(graph, node, x, {node.name, gate}):
        return OpSymmetry(
            composite={x: [node.name, gate]},
            tie_perm=[(gate, node.name)],
            admits=[(gate, NONE, "glu gate (sigmoid)"),
                    (node.name, Admits(Mag.DIAG, Sign.DIAG), "glu value")],
        )  # fmt: skip
    return OpSymmetry(fixed=[x, gate, node.name])


@rule("glu_gate")
def glu_gate_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """The gate half of a GLU's input: it exists only as the second input of its ``glu``
    node, whose rule moves it."""
    readers = graph.consumers(node.name)
    if len(readers) != 1 or graph.node(readers[0]).op != "glu":
        raise UnsupportedOpError(
            f"node {node.name!r}: a glu_gate must be read by exactly one glu node, got {readers}"
        )
    return OpSymmetry(admits=[(node.name, NONE, "glu gate")])


def _split_cover(graph: ArchGraph, x: str) -> list[str] | None:
    """The ``split_part`` readers of ``x`` in order, when they are all its readers and their
    ranges ``[start, stop)`` tile ``x``'s units exactly (each unit in one part)."""
    readers = [graph.node(r) for r in graph.consumers(x)]
    if not readers or any(r.op != "split_part" for r in readers):
        return None
    ordered = sorted(readers, key=lambda r: int(r.attrs["start"]))
    at = 0
    for r in ordered:
        start, stop = int(r.attrs["start"]), int(r.attrs["stop"])
        if start != at or stop <= start or r.width != stop - start:
            return None
        at = stop
    return [r.name for r in ordered] if at == graph.node(x).width else None


@rule("split_part")
def split_part_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Units ``start:stop`` of ``x`` (``attrs``): ``x`` is the block tensor of its parts where
    they tile it and ``x`` is a space of their own (module docstring); else all fixed."""
    x = _x(node, graph)
    parts = _split_cover(graph, x) if fresh_space(graph, x) else None
    if parts is None:
        return OpSymmetry(fixed=[x, node.name])
    return OpSymmetry(composite={x: parts})
