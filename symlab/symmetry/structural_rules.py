"""Rules for convolution, pooling, embeddings, GroupNorm, constants and opaque ops.

Convolutions over channels follow the same intertwiner logic as linear maps (a channel is a
unit); depthwise convolutions act per channel; pooling commutes with channel permutations
(max pooling with positive scalings, average pooling with any linear map of the channels).
Ops whose effect on units symlab does not model (reshapes, matmuls, softmax, …) are *opaque*:
their inputs and outputs are fixed, which is sound and derives nothing through them.
"""

from __future__ import annotations

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.builtin_rules import _linear_act, _norm_act, _x
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import ANY, NONE, Admits, FixedData, Mag, OpSymmetry, Sign
from symlab.symmetry.transform import Transform

Params = dict[str, torch.Tensor]


@rule("conv")
def conv_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Convolution with ``groups=1``: any invertible map of input and of output channels.

    Input shifts are absorbed by the bias only without zero padding (padding breaks them).
    """
    return OpSymmetry(
        admits=[(_x(node, graph), ANY, "conv input"), (node.name, ANY, "conv output")],
        absorbs_shift=bool(node.attrs.get("bias", True)) and not node.attrs.get("padded", True),
    )


conv_rule.action(_linear_act)


@rule("dwconv")
def dwconv_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Depthwise convolution (``groups = channels``): each channel filtered alone, so input and
    output channels permute together, each side scaled/signed per channel independently."""
    x = _x(node, graph)
    diag = Admits(Mag.DIAG, Sign.DIAG)
    return OpSymmetry(
        tie_perm=[(x, node.name)],
        admits=[(x, diag, "depthwise conv input"), (node.name, diag, "depthwise conv output")],
    )


@dwconv_rule.action
def _dwconv_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    w = t_out.out(params["weight"], 0)  # permutes by the (shared) channel permutation
    if t_in[0].scale is not None:
        s = t_in[0].scale.to(w.dtype)
        w = w / s.reshape(-1, *([1] * (w.ndim - 1)))
    out = dict(params, weight=w)
    if "bias" in params:
        out["bias"] = t_out.out(params["bias"], 0)
    return out


@rule("grouped_conv")
def grouped_conv_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Grouped convolution (1 < groups < channels): not modelled yet, so both sides are fixed
    (sound: nothing is derived through it)."""
    return OpSymmetry(fixed=[_x(node, graph), node.name])


grouped_conv_rule.action(lambda node, params, t_in, t_out: dict(params))


@rule("pool_max")
def max_pool_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Max pooling over positions: max(c·x) = c·max(x) for c > 0, per channel."""
    x = _x(node, graph)
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, Admits(Mag.DIAG, Sign.NONE), "max pool")])


@rule("pool_avg")
def avg_pool_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Average pooling (or a mean over positions) is linear and acts on positions only."""
    return OpSymmetry(tie=[(_x(node, graph), node.name)])


@rule("scale")
def scale_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Multiplication by a constant scalar commutes with every linear map of the units."""
    return OpSymmetry(tie=[(_x(node, graph), node.name)])


@rule("shift_const")
def shift_const_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Adding a constant scalar to every unit commutes with permutations only."""
    x = _x(node, graph)
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, NONE, "constant shift")])


@rule("embedding")
def embedding_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Token embedding: the table's feature axis is the output space (any invertible map);
    the indices it reads are not features."""
    return OpSymmetry(admits=[(node.name, ANY, "embedding")])


@embedding_rule.action
def _embedding_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    return dict(params, weight=t_out.out(params["weight"], 1))


@rule("opaque")
def opaque_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """An op symlab does not model unit by unit: its inputs and output stay fixed (sound)."""
    return OpSymmetry(fixed=[*graph.inputs(node.name), node.name])


@rule("invariant")
def invariant_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """An output unchanged by every symmetry of its input's producer (attention weights)."""
    return OpSymmetry(fixed=[node.name])


@rule("groupnorm")
def groupnorm_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """GroupNorm: channels may move only within their group (whole-group permutations are
    symmetries too but are not derived); one common scale and sign of the input is free."""
    x = _x(node, graph)
    c, g = int(node.width), int(node.attrs["num_groups"])
    groups = torch.arange(c) // (c // g)
    affine = bool(node.attrs.get("affine", True))
    return OpSymmetry(
        tie_perm=[(x, node.name)],
        admits=[
            (x, Admits(Mag.COMMON, Sign.COMMON if affine else Sign.NONE), "groupnorm input"),
            (node.name, Admits(Mag.DIAG, Sign.DIAG) if affine else NONE, "groupnorm"),
        ],
        fixed_data=[FixedData(f"{node.name}#groups", (x,), groups.double())],
        inexact=f"groupnorm divides out input scales only up to eps={node.attrs.get('eps')}",
    )


groupnorm_rule.action(_norm_act)


@rule("param_source")
def param_source_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """A parameter used directly as a tensor (a learned positional embedding added to the
    stream): its feature axis moves with whatever it is added to."""
    return OpSymmetry(admits=[(node.name, ANY, "parameter tensor")])


@param_source_rule.action
def _param_source_act(
    node: Node, params: Params, t_in: list[Transform], t_out: Transform
) -> Params:
    ((name, value),) = params.items()
    return {name: t_out.out(value, int(node.attrs["feature_axis"]))}


@rule("product")
def product_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``y = u ⊙ v`` (gated units, e.g. SwiGLU ``silu(W₁x) ⊙ W₃x``): the three move with one
    permutation; ``v`` and ``y`` share a per-unit scale and sign (``D u ⊙ v`` would scale ``y``
    twice if both moved), ``u`` keeps its magnitudes. ``v`` is the input made by a linear map
    (or cut from one's output: GEGLU's ``h * gelu(gate)``) when there is one."""
    a, b = graph.inputs(node.name)
    u, v = (b, a) if graph.node(a).op in ("linear", "linear_t", "conv", "split_part") else (a, b)
    diag = Admits(Mag.DIAG, Sign.DIAG)
    return OpSymmetry(
        tie=[(v, node.name)],
        tie_perm=[(u, node.name)],
        admits=[(u, NONE, "gate of a product"), (v, diag, "product"), (node.name, diag, "product")],
    )


@rule("relayout")
def relayout_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """A transpose, reshape or indexing that keeps every unit whole: the same units, on another
    axis (:mod:`symlab.frontend.axes`)."""
    return OpSymmetry(tie=[(graph.inputs(node.name)[0], node.name)])


@rule("join")
def join_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Concatenation/stacking along a non-feature axis: every part moves like the result."""
    return OpSymmetry(tie=[(x, node.name) for x in graph.inputs(node.name)])


@rule("std_conv")
def std_conv_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Weight-standardised convolution ``conv(x, g ⊙ (W - mean W) / std W) + b`` (each output
    channel's filter standardised over its inputs and taps; ``g`` an optional gain).

    Input channels: permutations only (a per-channel scale or sign would change each filter's
    mean and variance). Output channels: a sign per channel (standardisation is odd in the
    filter: ``-W`` standardises to the negative), and with a gain a positive scale per channel
    (``g ↦ c g``, ``b ↦ c b``); exact, no eps involved.
    """
    x = _x(node, graph)
    out = Admits(Mag.DIAG if node.attrs.get("gain") else Mag.NONE, Sign.DIAG)
    return OpSymmetry(
        admits=[(x, NONE, "standardised conv input"), (node.name, out, "standardised conv")]
    )


@std_conv_rule.action
def _std_conv_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    w = t_in[0].contract(params["weight"], 1)
    if t_out.perm is not None:
        w = w.index_select(0, t_out.perm)
    out = dict(params)
    s = t_out.scale
    if s is not None:
        sign = torch.sign(s).to(w.dtype)
        w = w * sign.reshape(-1, *([1] * (w.ndim - 1)))
    out["weight"] = w
    if "gain" in params:
        g = params["gain"] if t_out.perm is None else params["gain"].index_select(0, t_out.perm)
        if s is not None:
            g = g * s.abs().to(g.dtype).reshape(-1, *([1] * (g.ndim - 1)))
        out["gain"] = g
    if "bias" in params:
        out["bias"] = t_out.out(params["bias"], 0)
    return out
