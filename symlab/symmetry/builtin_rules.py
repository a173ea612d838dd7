"""Rules for the built-in ops, following the intertwiner table of
docs/concepts/symmetries.md.

Godfrey et al. (2022) for activations; BatchNorm/LayerNorm scale invariance (exact only up to the
norm's ``eps``); residual additions tie their summands; Lim et al. (2024) for W-asymmetric layers
and FiGLU, whose fixed data is handed to colour refinement.
"""

from __future__ import annotations

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.rules import rule
from symlab.symmetry.shift_rules import logit_translation
from symlab.symmetry.spec import ANY, NONE, Admits, FixedData, Mag, OpSymmetry, Sign
from symlab.symmetry.transform import Transform

Params = dict[str, torch.Tensor]

#: What each elementwise activation admits on its units (permutations always).
ACTIVATION_ADMITS: dict[str, Admits] = {
    "identity": ANY,
    "relu": Admits(Mag.DIAG, Sign.NONE),
    "leaky_relu": Admits(Mag.DIAG, Sign.NONE),
    "tanh": Admits(Mag.NONE, Sign.DIAG),
    "sigmoid": Admits(Mag.NONE, Sign.DIAG),
    "gelu": NONE,
    "silu": NONE,
    "softplus": NONE,
    "elu": NONE,
    # odd functions: sign flips pass through
    "softsign": Admits(Mag.NONE, Sign.DIAG),
    "tanhshrink": Admits(Mag.NONE, Sign.DIAG),
    "erf": Admits(Mag.NONE, Sign.DIAG),  # erf(-x) = -erf(x)
    # generic (nn.ReLU6 ⊂ ReLU6 ≠ homogeneous; hardtanh's range may be asymmetric)
    "relu6": NONE,
    "hardtanh": NONE,
    "mish": NONE,
    "hardswish": NONE,
    "selu": NONE,
    "celu": NONE,
    "hardsigmoid": NONE,
    "logsigmoid": NONE,
    # x * x (the same tensor twice): even, and (cx)² = c²x² is no tie — permutations only
    "square": NONE,
    # |cx| = c|x| for c > 0 (the sign flips |-x| = |x| absorbs are not derived)
    "abs": Admits(Mag.DIAG, Sign.NONE),
    "exp": NONE,  # exp(x + c) = e^c exp(x) would need shifts; permutations only
}


def _x(node: Node, graph: ArchGraph) -> str:
    return graph.inputs(node.name)[0]


@rule("input")
def input_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Network inputs never move."""
    return OpSymmetry(fixed=[node.name], admits=[(node.name, NONE, "network input")])


@rule("output")
def output_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Network outputs never move."""
    x = _x(node, graph)
    return OpSymmetry(tie=[(x, node.name)], fixed=[x], admits=[(x, NONE, "network output")])


@rule("linear")
def linear_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``y = W x + b``: any invertible map on either side (``W ↦ A W B⁻¹``)."""
    return OpSymmetry(
        admits=[(_x(node, graph), ANY, "linear input"), (node.name, ANY, "linear output")],
        absorbs_shift=bool(node.attrs.get("bias", True)),
    )


def _affine_act(
    params: Params,
    t_in: list[Transform],
    t_out: Transform,
    fixed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Params:
    """``W ↦ T_out W T_in⁻¹``, ``b ↦ T_out b``; a shift ``c`` of the input is absorbed as
    ``b − W' c`` through the weight the layer applies (``F + D ⊙ W'`` for ``fixed = (D, F)``)."""
    w = t_out.out(t_in[0].contract(params["weight"], 1), 0)
    out = dict(params, weight=w)
    if "bias" in params:
        b = t_out.out(params["bias"], 0)
        if t_in[0].shift is not None:  # W(x + c) + b: a conv adds Σ over its kernel of W c
            applied = w if fixed is None else fixed[1].to(w.dtype) + fixed[0].to(w.dtype) * w
            taps = applied.reshape(w.shape[0], w.shape[1], -1).sum(-1)
            b = b - taps @ t_in[0].shift.to(w.dtype)
        out["bias"] = b
    return out


@linear_rule.action
def _linear_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    return _affine_act(params, t_in, t_out)


@rule("wasym_linear")
def wasym_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``y = (F + D ⊙ W) x + b`` (Lim et al. 2024): the masks and fixed values never move.

    Permutations must preserve ``D`` and ``F`` (colour refinement). Diagonal scalings and signs
    keep the zero pattern, so they are admitted when ``F = 0`` (κ = 0); with non-zero fixed
    values no scaling is admitted (sound; a common scale linking layers is not derived). With
    Ziyin et al.'s syre offset (``F ≠ 0`` where ``D = 1``, attribute ``syre``) neither. With
    ``F = 0`` and a bias the layer absorbs a shift ``c`` of its input (a sigmoid's sign flip)
    as ``b − (D ⊙ W) c``: the action reads the fixed data.
    """
    x = _x(node, graph)
    kernel = tuple(node.attrs.get("kernel", ()))  # convolutions: fixed spatial axes
    # traced modules report what their buffers hold (masked_layer_attrs); builders what they ask
    nf, kappa = int(node.attrs.get("num_fixed", 0)), float(node.attrs.get("kappa", 1.0))
    masked = node.attrs.get("masked", nf > 0)
    syre = float(node.attrs.get("syre", 0.0)) != 0.0
    f_nonzero = node.attrs.get("fixed_nonzero", (nf > 0 and kappa != 0.0) or syre)
    if f_nonzero:  # F ≠ 0: scaling a unit would scale its fixed values too
        adm = NONE
    elif masked:  # F = 0: diagonal maps keep the zero pattern of D
        adm = Admits(Mag.DIAG, Sign.DIAG)
    else:
        adm = ANY
    return OpSymmetry(
        admits=[(x, adm, "W-asymmetric input"), (node.name, adm, "W-asymmetric output")],
        # a shift of x is absorbed as b - (F + D ⊙ W') c (_wasym_act reads D and F); claimed
        # only with F = 0, where flips of x are admitted at all
        absorbs_shift=bool(node.attrs.get("bias", True))
        and not node.attrs.get("padded", False)
        and not f_nonzero,
        fixed_data=[
            FixedData(f"{node.name}.{key}", (node.name, x) + (None,) * len(kernel))
            for key in ("mask", "fixed")
        ],
    )


def _wasym_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    """The linear action; a shift of the input goes through the applied ``F + D ⊙ W``. (The
    rule admits shifts only with ``F = 0``; brute force also tries maps it does not admit.)"""
    return _affine_act(params, t_in, t_out, (params.pop("mask"), params.pop("fixed")))


wasym_rule.action(_wasym_act)
wasym_conv_rule = rule("wasym_conv")(wasym_rule.derive)
wasym_conv_rule.action(_wasym_act)
wasym_rule.reads_fixed = wasym_conv_rule.reads_fixed = True


@rule("activation")
def activation_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Elementwise ``σ``: units move together in and out; the table decides what else."""
    fn = node.attrs.get("fn")
    if fn not in ACTIVATION_ADMITS:
        from symlab.errors import UnsupportedOpError

        raise UnsupportedOpError(
            f"node {node.name!r}: activation {fn!r} has no entry in the intertwiner table; add "
            "it to symlab.symmetry.builtin_rules.ACTIVATION_ADMITS"
        )
    x = _x(node, graph)
    admits = ACTIVATION_ADMITS[fn]
    # a graph's hardtanh without a range is nn.Hardtanh()'s (-1, 1); the front-ends record it
    if fn == "hardtanh" and node.attrs.get("min_val", -1.0) == -node.attrs.get("max_val", 1.0):
        admits = Admits(Mag.NONE, Sign.DIAG)  # a symmetric clamp is odd
    spec = OpSymmetry(tie=[(x, node.name)], admits=[(x, admits, f"{fn}")])
    if fn == "sigmoid":
        # σ(-z) = 1 - σ(z): a sign flip of the input shifts the output by (1 - s)/2.
        spec.out_shift = lambda s: (1 - s) / 2
    return spec


@rule("dropout")
def dropout_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Dropout multiplies each unit by its own mask: diagonal maps commute with it."""
    x = _x(node, graph)
    return OpSymmetry(tie=[(x, node.name)], admits=[(x, Admits(Mag.DIAG, Sign.DIAG), "dropout")])


@rule("figlu")
def figlu_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``σ(x) = sigmoid(C x) ⊙ x`` with fixed ``C``: permutations must satisfy ``Pᵀ C P = C``."""
    x = _x(node, graph)
    return OpSymmetry(
        tie=[(x, node.name)],
        admits=[(x, NONE, "FiGLU gate is not homogeneous")],
        fixed_data=[FixedData(f"{node.name}.gate", (x, x))],
    )


rule("figlu2d")(figlu_rule.derive)  # the same gate, mixing channels (axis 1) of feature maps


def _norm_spec(node: Node, graph: ArchGraph, kind: str) -> OpSymmetry:
    x = _x(node, graph)
    affine = bool(node.attrs.get("affine", True))
    per_unit = Mag.DIAG if kind == "batchnorm" else Mag.COMMON
    # RMSNorm's statistic mean(x²) ignores the sign of every unit: per-unit signs pass
    sign = (Sign.DIAG if kind in ("batchnorm", "rmsnorm") else Sign.COMMON) if affine else Sign.NONE
    out_adm = Admits(Mag.DIAG, Sign.DIAG) if affine else NONE
    return OpSymmetry(
        tie_perm=[(x, node.name)],
        admits=[(x, Admits(per_unit, sign), f"{kind} input"), (node.name, out_adm, kind)],
        absorbs_shift=kind == "batchnorm",
        inexact=f"{kind} divides out input scales only up to eps={node.attrs.get('eps', 1e-5)}",
    )


@rule("layernorm")
def layernorm_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """LayerNorm: a common scale (and, with affine, a common sign) of its input is free; it
    subtracts the mean of its units, so when a linear map produces its input for it alone,
    that map's translations ``W ↦ W + 1vᵀ``, ``b ↦ b + c1`` are free too (exactly)."""
    spec = _norm_spec(node, graph, "layernorm")
    x = _x(node, graph)
    if graph.node(x).op == "linear" and graph.consumers(x) == [node.name]:
        spec.translations.append(logit_translation(graph.node(x), "mean_shift"))
    return spec


@rule("rmsnorm")
def rmsnorm_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """RMSNorm: like LayerNorm without centring (a common scale of its input is free, up to
    eps, and with an affine weight a sign per unit: ``mean(x²)`` ignores signs; no
    translation)."""
    return _norm_spec(node, graph, "rmsnorm")


@rule("batchnorm")
def batchnorm_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """BatchNorm: any per-channel scale of its input is free (no compensation, up to eps)."""
    return _norm_spec(node, graph, "batchnorm")


def _norm_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    out = dict(params)
    s_in = t_in[0].sign()
    for key in ("weight", "bias"):
        if key in params:
            v = t_out.out(params[key], 0)
            if key == "weight" and s_in is not None:
                v = v * s_in.to(v.dtype)
            out[key] = v
    if "bias" in params and t_out.shift is not None:
        out["bias"] = out["bias"] + t_out.shift.to(out["bias"].dtype)
    if "running_mean" in params:
        rm = t_in[0].out(params["running_mean"], 0)
        if t_in[0].shift is not None:
            rm = rm + t_in[0].shift.to(rm.dtype)
        out["running_mean"] = rm
    if "running_var" in params:
        rv = params["running_var"]
        if t_in[0].perm is not None:
            rv = rv[t_in[0].perm]
        if t_in[0].scale is not None:
            rv = rv * t_in[0].scale.to(rv.dtype) ** 2
        out["running_var"] = rv
    return out


layernorm_rule.action(_norm_act)
rmsnorm_rule.action(_norm_act)
batchnorm_rule.action(_norm_act)


@rule("add")
def add_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """A sum ties every summand and the result to one transformation."""
    return OpSymmetry(tie=[(x, node.name) for x in graph.inputs(node.name)])


@rule("flatten")
def flatten_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Flatten of a feature vector is the identity on its units; flattening ``C`` channels of
    ``S`` positions (channel-major) maps a channel permutation to a block permutation."""
    repeat = int(node.attrs.get("repeat", 1))
    if repeat == 1:
        return OpSymmetry(tie=[(_x(node, graph), node.name)])
    return OpSymmetry(composite={node.name: [_x(node, graph)]}, repeat={node.name: repeat})


@rule("concat")
def concat_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Concatenation: a block map, each block moving with its own input."""
    return OpSymmetry(composite={node.name: graph.inputs(node.name)})
