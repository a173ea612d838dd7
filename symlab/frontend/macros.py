"""Known composite torch modules, expanded into graph nodes while tracing.

``nn.MultiheadAttention`` becomes one ``mha`` node (head permutations and per-head GL are its
internal factors); ``nn.TransformerEncoderLayer``/``nn.TransformerEncoder`` (whose forward has a
fast path fx cannot trace) are expanded into attention, feed-forward, norm and residual nodes
following their documented computation (post-norm, or pre-norm with ``norm_first``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from symlab.errors import UnsupportedOpError
from symlab.frontend.layers import LAYER_MACROS
from symlab.frontend.modules import module_op_for
from symlab.frontend.recurrent import RECURRENT_MACROS
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["MACROS"]


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return "@" + name[1:] if name.startswith("#") else name
    return f"{prefix}{name}" if name.startswith("#") else f"{prefix}.{name}"


def _mha_node(cv: Converter, name: str, mod: nn.MultiheadAttention, ins: list[str],
              qkv: tuple[int, int, int]) -> str:  # fmt: skip
    if not mod._qkv_same_embed_dim or mod.bias_k is not None or mod.add_zero_attn:
        raise UnsupportedOpError(
            f"node {name!r}: MultiheadAttention with separate q/k/v dims, bias_kv or "
            "add_zero_attn is not supported yet"
        )
    e = mod.embed_dim
    params = [ParamSpec("in_proj_weight", (3 * e, e), ("none", "in"))]
    if mod.in_proj_bias is not None:
        params.append(ParamSpec("in_proj_bias", (3 * e,), ("none",)))
    params.append(ParamSpec("out_proj.weight", (e, e), ("out", "none")))
    if mod.out_proj.bias is not None:
        params.append(ParamSpec("out_proj.bias", (e,), ("out",)))
    shape = cv.shape[ins[qkv[0]]]
    return cv.add_node(name, "mha", ins, shape, cv.fa[ins[qkv[0]]], params,
                       num_heads=mod.num_heads, qkv=qkv)  # fmt: skip


def _mha(cv: Converter, node: fx.Node, target: str, mod: nn.Module, ins: list[str]) -> None:
    assert isinstance(mod, nn.MultiheadAttention)
    args = list(node.args[:3]) + [node.kwargs.get(k) for k in ("query", "key", "value")]
    srcs = [a for a in args if isinstance(a, fx.Node)][:3]
    qkv = tuple(ins.index(cv.name[a]) for a in srcs)
    if len(qkv) != 3 or any(cv.fa[ins[i]] != len(cv.shape[ins[i]]) - 1 for i in qkv):
        raise UnsupportedOpError(f"node {target!r}: attention inputs must carry features last")
    name = _mha_node(cv, target, mod, ins, qkv)  # type: ignore[arg-type]

    def pick(index: int, consumer: fx.Node) -> str:
        if index == 0:
            return name
        shape = consumer.meta["tensor_meta"].shape
        return cv.add_node(f"{name}#weights", "invariant", [name], tuple(shape), -1)

    cv.tuples[node] = pick


def _act_node(cv: Converter, name: str, act: Any, x: str) -> str:
    if isinstance(act, nn.Module):
        entry = module_op_for(act)
        if entry is None:
            raise UnsupportedOpError(f"node {name!r}: activation {type(act).__name__} unknown")
        op, _, attrs = entry.read(act, cv.g.node(x).width)
    else:
        fns = {F.relu: "relu", F.gelu: "gelu", F.silu: "silu", F.tanh: "tanh"}
        if act not in fns:
            raise UnsupportedOpError(f"node {name!r}: activation function {act!r} unknown")
        op, attrs = "activation", {"fn": fns[act]}
    return cv.add_node(name, op, [x], cv.shape[x], cv.fa[x], **attrs)


def _module_node(cv: Converter, name: str, mod: nn.Module, x: str) -> str:
    entry = module_op_for(mod)
    if entry is None:
        raise UnsupportedOpError(
            f"node {name!r}: {type(mod).__name__} inside a transformer layer is not read as a "
            "registered layer (a subclass whose forward differs, or an unknown module)"
        )
    op, width, attrs = entry.read(mod, cv.g.node(x).width)
    shape = (*cv.shape[x][:-1], int(width))
    return cv.add_node(name, op, [x], shape, -1, **attrs)


def _encoder_layer(cv: Converter, prefix: str, mod: nn.TransformerEncoderLayer, x: str) -> str:
    def sa(h: str) -> str:
        a = _mha_node(cv, _join(prefix, "self_attn"), mod.self_attn, [h], (0, 0, 0))
        return _module_node(cv, _join(prefix, "dropout1"), mod.dropout1, a)

    def ff(h: str) -> str:
        h = _module_node(cv, _join(prefix, "linear1"), mod.linear1, h)
        h = _act_node(cv, _join(prefix, "activation"), mod.activation, h)
        h = _module_node(cv, _join(prefix, "dropout"), mod.dropout, h)
        h = _module_node(cv, _join(prefix, "linear2"), mod.linear2, h)
        return _module_node(cv, _join(prefix, "dropout2"), mod.dropout2, h)

    def add(a: str, b: str, tag: str) -> str:
        return cv.add_node(_join(prefix, f"#{tag}"), "add", [a, b], cv.shape[a], cv.fa[a])

    if mod.norm_first:
        x = add(x, sa(_module_node(cv, _join(prefix, "norm1"), mod.norm1, x)), "add1")
        return add(x, ff(_module_node(cv, _join(prefix, "norm2"), mod.norm2, x)), "add2")
    x = _module_node(cv, _join(prefix, "norm1"), mod.norm1, add(x, sa(x), "add1"))
    return _module_node(cv, _join(prefix, "norm2"), mod.norm2, add(x, ff(x), "add2"))


def _layer(cv: Converter, node: fx.Node, target: str, mod: nn.Module, ins: list[str]) -> None:
    assert isinstance(mod, nn.TransformerEncoderLayer)
    if len(cv.shape[ins[0]]) != 3:
        raise UnsupportedOpError(f"node {target!r}: expected a (batch, tokens, features) input")
    cv.name[node] = _encoder_layer(cv, target, mod, ins[0])


def _encoder(cv: Converter, node: fx.Node, target: str, mod: nn.Module, ins: list[str]) -> None:
    assert isinstance(mod, nn.TransformerEncoder)
    x = ins[0]
    for i, layer in enumerate(mod.layers):
        x = _encoder_layer(cv, _join(target, f"layers.{i}"), layer, x)
    if mod.norm is not None:
        x = _module_node(cv, _join(target, "norm"), mod.norm, x)
    cv.name[node] = x


MACROS: dict[type[nn.Module], Callable[..., None]] = {
    nn.MultiheadAttention: _mha,
    nn.TransformerEncoderLayer: _layer,
    nn.TransformerEncoder: _encoder,
    **LAYER_MACROS,  # PReLU, ConvTranspose, PixelShuffle (symlab.frontend.layers)
    **RECURRENT_MACROS,  # RNN, GRU, LSTM (symlab.frontend.recurrent)
}
