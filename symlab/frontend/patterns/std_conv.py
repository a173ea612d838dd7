"""Weight-standardised convolutions (Qiao et al., "Micro-Batch Training with Batch-Channel
Normalization and Weight Standardization", 2019; Brock et al., "Characterizing signal
propagation to close the performance gap in unnormalized ResNets", ICLR 2021), written the way
timm's ``StdConv2d`` and ``ScaledStdConv2d`` write them::

    weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                          weight=(self.gain * self.scale).view(-1),   # ScaledStdConv2d only
                          training=True, momentum=0., eps=self.eps).reshape_as(self.weight)
    return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

The chain becomes one ``std_conv`` node (rule: :func:`symlab.symmetry.structural_rules.
std_conv_rule`); with ``groups > 1`` (grouped or depthwise) one ``grouped_conv`` node, whose
input, output and parameters are fixed (sound: nothing is derived through it).
"""

from __future__ import annotations

import numbers
import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch.nn import functional as F

from symlab.frontend.functional_layers import _SIGNATURES, call_args, conv_attrs
from symlab.frontend.patterns.registry import register_pattern
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__: list[str] = []

_CONVS = {F.conv1d, F.conv2d, F.conv3d, torch.conv1d, torch.conv2d, torch.conv3d}
_RESHAPES = {"reshape", "view"}


def _get_attr(n: Any, leaf: str) -> str | None:
    if isinstance(n, fx.Node) and n.op == "get_attr" and str(n.target).rpartition(".")[2] == leaf:
        return str(n.target)
    return None


def _gain(g: Any, prefix: str, seen: list[fx.Node]) -> bool:
    """``(self.gain * c).view(-1)`` (or ``self.gain.view(-1)``)."""
    if not (isinstance(g, fx.Node) and g.op == "call_method" and g.target in _RESHAPES):
        return False
    seen.append(g)
    m = g.args[0]
    if _get_attr(m, "gain") == f"{prefix}gain":
        seen.append(m)
        return True
    if isinstance(m, fx.Node) and m.op == "call_function" and m.target is operator.mul:
        a, b = m.args
        gain, c = (a, b) if isinstance(a, fx.Node) else (b, a)
        if isinstance(c, numbers.Real) and c > 0 and _get_attr(gain, "gain") == f"{prefix}gain":
            seen += [m, gain]
            return True
    return False


def _match(conv: fx.Node) -> dict[str, Any] | None:
    a = call_args(conv, _SIGNATURES[conv.target])
    w = a["weight"]
    if not (isinstance(w, fx.Node) and w.op == "call_method" and w.target == "reshape_as"):
        return None
    bn, ref = w.args
    key = _get_attr(ref, "weight")
    if key is None or not (isinstance(bn, fx.Node) and bn.target is F.batch_norm):
        return None
    b = call_args(bn, _SIGNATURES[F.batch_norm])
    r = b["input"]
    ok = b["running_mean"] is None and b["running_var"] is None and b["bias"] is None
    ok = ok and b["training"] is True
    if not ok or not (isinstance(r, fx.Node) and r.target in _RESHAPES and r.args[0] is ref):
        return None
    prefix = key[: -len("weight")]
    seen = [w, bn, r, ref]
    if b["weight"] is not None and not _gain(b["weight"], prefix, seen):
        return None
    if any(set(n.users) - set(seen) - {conv} for n in seen):
        return None  # a piece of the chain is used elsewhere: not just this conv's weight
    bias = a["bias"]
    if bias is not None and _get_attr(bias, "bias") != f"{prefix}bias":
        return None
    return {"conv": conv, "args": a, "prefix": prefix[:-1], "nodes": seen,
            "gain": b["weight"] is not None, "eps": float(b["eps"])}  # fmt: skip


def _find(gm: fx.GraphModule) -> tuple[dict[fx.Node, Any], set[fx.Node]]:
    found: dict[fx.Node, Any] = {}
    gone: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _CONVS:
            m = _match(node)
            if m is not None:
                found[node] = m
                gone |= set(m["nodes"])
    return found, gone


def _emit(cv: Converter, m: dict[str, Any]) -> str:
    conv, a, prefix = m["conv"], m["args"], m["prefix"]
    x = cv.on_axis(conv, cv.name[a["input"]], 1)
    full = f"{prefix}." if prefix else ""
    w = cv.state[f"{full}weight"]
    _, attrs = conv_attrs(tuple(w.shape), int(cv.shape[x][1]), a)
    grouped = int(a["groups"]) != 1  # grouped or depthwise: not modelled, both sides fixed
    roles = ("none", "none") if grouped else ("out", "in")
    specs = [ParamSpec("weight", tuple(w.shape), roles + ("none",) * (w.ndim - 2))]
    if m["gain"]:
        g = cv.state[f"{full}gain"]
        specs.append(ParamSpec("gain", tuple(g.shape), (roles[0],) + ("none",) * (g.ndim - 1)))
    if a["bias"] is not None:
        specs.append(ParamSpec("bias", (int(w.shape[0]),), (roles[0],)))
    if cv.strip is not None:
        prefix = prefix.removeprefix(cv.strip).removeprefix(".")
    name, extra = (prefix, {}) if prefix else ("@root", {"absolute_keys": True})
    if grouped:
        return cv.emit(conv, name, "grouped_conv", [x], 1, params=specs, **extra, **attrs)
    return cv.emit(conv, name, "std_conv", [x], 1, params=specs, gain=m["gain"], eps=m["eps"],
                   **extra, **{k: v for k, v in attrs.items() if k != "groups"})  # fmt: skip


register_pattern("std_conv", _find, _emit)
