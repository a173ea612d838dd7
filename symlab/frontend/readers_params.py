"""Functional ops whose parameters are a module's tensors: ``F.linear(x, self.w, self.b)``,
``F.layer_norm(x, shape, self.g, self.b)``, ``F.prelu(x, self.a)``.

Each becomes the node of its module twin (``linear``, ``layernorm``, ``prelu``) whose
parameters are named by role and mapped to their ``state_dict`` keys (``param_keys``). An
argument that is no parameter (a constant, or a tensor computed in the forward) makes the call
opaque (fixed: sound); a parameter read by another op too (weight sharing) is refused, since
one tensor cannot move two ways.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from symlab.errors import UnsupportedOpError
from symlab.frontend.fxutil import unsupported, where
from symlab.frontend.readers import arg, reads
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["claim", "emit_prelu"]


def claim(cv: Converter, node: fx.Node, a: Any) -> tuple[str, str] | None:
    """``(state_dict key, kind)`` of the parameter (or buffer) that argument ``a`` of ``node``
    reads, or None when ``a`` is no such tensor (a constant, or computed in the forward).

    Another op may read the same tensor (an embedding's table as the output layer,
    ``F.linear(h, self.wte.weight)``; one weight in two functional calls): every reader then
    declares it, :mod:`symlab.symmetry.sharing` ties their moves, and
    :meth:`Converter.check_tracked` refuses the model where a reader does not declare it. A
    pattern's reading it too (rotary tables read as fixed data) raises
    :class:`UnsupportedOpError` here: what a pattern reads, check_tracked does not see."""
    if not isinstance(a, fx.Node) or a.op != "get_attr" or a in cv.name:
        return None
    key = str(a.target)
    if key not in cv.state:
        return None  # a non-persistent buffer: a constant, never moved
    reads = [n for n in cv.gm.graph.nodes if n.op == "get_attr" and str(n.target) == key]
    if any(n in cv.swallowed or (set(n.users) - {node}) & cv.swallowed for n in reads):
        raise UnsupportedOpError(
            f"node {node.name!r}: {key!r} is also read by a block symlab matched as a whole "
            f"(attention, rotary embedding, a hand-written layer){where(node)}; symlab cannot "
            "tie one tensor across them. Clone it for one of them to derive the group of the "
            "untied model"
        )
    return key, "param" if isinstance(cv.state[key], nn.Parameter) else "buffer"


def _features_last(cv: Converter, x: str) -> bool:
    """Whether the units of ``x`` lie on its last axis, where F.linear/F.layer_norm act. When
    they do not (SqueezeBERT's LayerNorm over channels of a (B, C, T) tensor whose units
    symlab placed elsewhere), the call is read as opaque: its input, output and parameters
    fixed — sound, its own symmetries not derived."""
    return cv.fa[x] == len(cv.shape[x]) - 1


@reads(F.linear)
def _linear(cv: Converter, node: fx.Node) -> bool:
    x = cv.name.get(arg(node, 0, "input"))  # type: ignore[arg-type]
    if x is None:
        return False
    w, b = arg(node, 1, "weight"), arg(node, 2, "bias")
    cw = claim(cv, node, w)
    cb = claim(cv, node, b) if b is not None else None
    if cw is None or (b is not None and cb is None) or cv.state[cw[0]].ndim != 2:
        cv.opaque(node)  # a weight computed in the forward: a matmul symlab does not model
        return True
    if not _features_last(cv, x):
        cv.opaque(node)
        return True
    out_f, in_f = (int(s) for s in cv.state[cw[0]].shape)
    params = [ParamSpec("weight", (out_f, in_f), ("out", "in"), cw[1])]  # type: ignore[arg-type]
    keys = {"weight": cw[0]}
    if cb is not None:
        params.append(ParamSpec("bias", (out_f,), ("out",), cb[1]))  # type: ignore[arg-type]
        keys["bias"] = cb[0]
    cv.emit(node, f"@{node.name}", "linear", [x], -1, params, bias=cb is not None,
            param_keys=keys)  # fmt: skip
    return True


@reads(F.layer_norm)
def _layer_norm(cv: Converter, node: fx.Node) -> bool:
    x = cv.name.get(arg(node, 0, "input"))  # type: ignore[arg-type]
    if x is None:
        return False
    shape = arg(node, 1, "normalized_shape")
    shape = [shape] if isinstance(shape, int) else list(shape)
    if len(shape) != 1 or shape[0] != cv.shape[x][-1]:
        raise unsupported(node, "F.layer_norm over several axes")
    if not _features_last(cv, x):
        cv.opaque(node)
        return True
    params, keys = [], {}
    for i, role in ((2, "weight"), (3, "bias")):
        a = arg(node, i, role)
        if a is None:
            continue
        got = claim(cv, node, a)
        if got is None:
            cv.opaque(node)  # an affine computed in the forward (adaptive norms): fixed
            return True
        params.append(ParamSpec(role, (shape[0],), ("out",), got[1]))  # type: ignore[arg-type]
        keys[role] = got[0]
    eps = float(arg(node, 4, "eps", 1e-5))
    cv.emit(node, f"@{node.name}", "layernorm", [x], -1, params, eps=eps,
            affine="weight" in keys, bias="bias" in keys, param_keys=keys)  # fmt: skip
    return True


def emit_prelu(cv: Converter, node: fx.Node, name: str, x: str, key: str, kind: str,
               shape: tuple[int, ...]) -> str:  # fmt: skip
    """The ``prelu`` node of a slope of ``shape`` (one value: as LeakyReLU; ``C`` values: one
    per channel, which must be the units of ``x`` on axis 1, or 0 for a 1-D input)."""
    n = math.prod(shape)
    if n == 1:
        spec = ParamSpec("weight", shape, ("none",) * len(shape), kind)  # type: ignore[arg-type]
    else:
        channel = 1 if len(cv.shape[x]) >= 2 else 0
        if cv.fa[x] != channel or cv.shape[x][channel] != n or len(shape) != 1:
            raise UnsupportedOpError(
                f"node {name!r}: PReLU with {n} slopes applies them along axis {channel}, but "
                f"the units of its input lie on axis {cv.fa[x]}{where(node)}"
            )
        spec = ParamSpec("weight", shape, ("out",), kind)  # type: ignore[arg-type]
    return cv.emit(node, name, "prelu", [x], cv.fa[x], [spec], per_channel=n > 1,
                   param_keys={"weight": key})  # fmt: skip


@reads(F.prelu)
def _prelu(cv: Converter, node: fx.Node) -> bool:
    x = cv.name.get(arg(node, 0, "input"))  # type: ignore[arg-type]
    if x is None:
        return False
    got = claim(cv, node, arg(node, 1, "weight"))
    if got is None:
        cv.opaque(node)  # a slope computed in the forward: fixed
        return True
    shape = tuple(int(s) for s in cv.state[got[0]].shape)
    emit_prelu(cv, node, f"@{node.name}", x, got[0], got[1], shape)
    return True
