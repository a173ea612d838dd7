"""Layers written as functional calls on a module's own parameters.

A subclass whose ``forward`` differs from its registered base is traced into
(:mod:`symlab.frontend.exact`); its forward then calls the functional form of the layer on
its own parameters — timm's ``BatchNormAct2d`` calls ``F.batch_norm(x, self.running_mean,
self.running_var, self.weight, self.bias, ...)``, ``super().forward(x)`` of a ``Conv2d``
reaches ``F.conv2d(x, self.weight, self.bias, ...)``. Such a call is the layer itself: it
becomes the same graph op as the module would, named after the module that owns the
parameters. Every parameter must be read straight from the module (a ``get_attr``, used by
this call alone) under its standard name, or through reshapes that give it back its own shape
(``squeeze``/``unsqueeze``/``view``/``reshape``/``flatten``/``unflatten`` keep the entries in
order, so back at the parameter's shape they are the parameter: Qwen3.5's
``F.conv1d(x, conv1d.weight.squeeze(1).unsqueeze(1), groups=channels)``), each step read by
the next alone; anything else is refused (a computed weight is another function).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch.nn import functional as F

from symlab.errors import UnsupportedOpError
from symlab.frontend.fxutil import where
from symlab.frontend.units import _metadata
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = [
    "CHANNEL_FIRST", "LAYER_FUNCS", "call_args", "pool_keeps_shift", "read_layer_call",
    "reshaped_parameters", "stored",
]  # fmt: skip

_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_SIGNATURES: dict[Any, tuple[str, ...]] = {
    F.batch_norm: ("input", "running_mean", "running_var", "weight", "bias", "training",
                   "momentum", "eps"),
    F.group_norm: ("input", "num_groups", "weight", "bias", "eps"),
    F.conv1d: _CONV, F.conv2d: _CONV, F.conv3d: _CONV,
    torch.conv1d: _CONV, torch.conv2d: _CONV, torch.conv3d: _CONV,
    F.linear: ("input", "weight", "bias"),
    F.embedding: ("input", "weight", "padding_idx", "max_norm", "norm_type",
                  "scale_grad_by_freq", "sparse"),
}  # fmt: skip
_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
             "training": False, "momentum": 0.1, "eps": 1e-5, "running_mean": None,
             "running_var": None, "weight": None, "padding_idx": None, "max_norm": None,
             "norm_type": 2.0, "scale_grad_by_freq": False, "sparse": False}  # fmt: skip


def call_args(node: fx.Node, names: tuple[str, ...]) -> dict[str, Any]:
    """The arguments of a call node by name (positional first, then keywords, then defaults).

    >>> import torch.fx as fx
    >>> g = fx.Graph(); x = g.placeholder("x")
    >>> n = g.call_function(F.conv2d, (x, x), {"padding": 1})
    >>> a = call_args(n, _CONV); a["padding"], a["groups"]
    (1, 1)
    """
    out = {k: _DEFAULTS.get(k) for k in names}
    out.update(zip(names, node.args, strict=False))
    out.update({k: v for k, v in node.kwargs.items() if k in out})
    return out


#: ops that only reshape a tensor, keeping its entries in order: back at the tensor's own
#: shape, the tensor itself (Qwen3.5's ``conv1d.weight.squeeze(1)``, later ``.unsqueeze(1)``)
_RESHAPES = {"squeeze", "unsqueeze", "view", "reshape", "flatten", "unflatten", torch.squeeze,
             torch.unsqueeze, torch.reshape, torch.flatten}  # fmt: skip


def stored(cv: Converter, arg: Any) -> Any:
    """``arg`` itself, or the parameter (``get_attr``) it is when it only reshapes one back to
    the parameter's own shape, each step read by the next alone."""
    node = arg
    while isinstance(node, fx.Node) and node.op != "get_attr":
        if node.op not in ("call_method", "call_function") or node.target not in _RESHAPES:
            return arg
        if len(_readers(node)) != 1 or not node.args or not isinstance(node.args[0], fx.Node):
            return arg
        node = node.args[0]
    if node is arg or not isinstance(node, fx.Node) or len(_readers(node)) != 1:
        return arg
    value = cv.state.get(str(node.target))
    shape = cv.meta_shape(arg)
    if value is None or shape is None or tuple(value.shape) != tuple(shape):
        return arg
    return node


def _readers(node: fx.Node) -> list[fx.Node]:
    """The users of ``node`` that read its values (not its shape: ``w.view(w.shape)``)."""
    return [u for u in node.users if not _metadata(u)]


def _param(cv: Converter, node: fx.Node, arg: Any, leaf: str) -> str | None:
    """The module prefix owning parameter ``arg`` read under its standard name ``leaf``."""
    if arg is None:
        return None
    given, arg = arg, stored(cv, arg)
    if not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
        raise UnsupportedOpError(
            f"node {node.name!r}: {node.target.__name__}'s {leaf} is computed, not a module's "
            f"own parameter{where(node)}; symlab reads the functional layer only on a module's "
            "parameters (register a pattern for the computation)"
        )
    key = str(arg.target)
    prefix, _, name = key.rpartition(".")
    # read by this call alone: through its reshapes (stored checked each step has one reader)
    readers = [node] if given is not arg else _readers(arg)
    if name != leaf or key not in cv.state or any(u.target is not node.target for u in readers):
        raise UnsupportedOpError(
            f"node {node.name!r}: {node.target.__name__} reads {key!r} as its {leaf}"
            f"{where(node)}; symlab reads it as a layer only when it is the module's own "
            f"{leaf!r}, used by calls of {node.target.__name__} alone"
        )
    return prefix


def _owner(cv: Converter, node: fx.Node, params: dict[str, Any]) -> str:
    """The (stripped) path of the one module whose parameters the call reads."""
    prefixes = {leaf: _param(cv, node, a, leaf) for leaf, a in params.items()}
    found = {p for p in prefixes.values() if p is not None}
    if len(found) != 1:
        raise UnsupportedOpError(
            f"node {node.name!r}: {node.target.__name__} reads parameters of "
            f"{sorted(found) or 'no module'}{where(node)}; symlab reads it as a layer only on "
            "the parameters of one module"
        )
    prefix = found.pop()
    if cv.strip is not None:
        prefix = prefix.removeprefix(cv.strip).removeprefix(".")
    return prefix


def _spec(cv: Converter, full: str, leaf: str, axes: tuple[str, ...]) -> ParamSpec:
    value = cv.state[full]
    kind = "param" if isinstance(value, torch.nn.Parameter) else "buffer"
    return ParamSpec(leaf, tuple(value.shape), axes, kind)  # type: ignore[arg-type]


def _emit(cv: Converter, node: fx.Node, prefix: str, op: str, x: str, fa: int,
          specs: list[ParamSpec], **attrs: Any) -> None:  # fmt: skip
    """One node per call; a second call on the same parameters (an embedding shared by an
    encoder and a decoder) declares the same keys, so :mod:`symlab.symmetry.sharing` ties the
    calls."""
    if prefix and prefix in cv.g.nx:
        calls = 2
        while f"{prefix}@{calls}" in cv.g.nx:
            calls += 1
        cv.emit(node, f"{prefix}@{calls}", op, [x], fa, params=specs, key_prefix=prefix, **attrs)
    elif prefix:
        cv.emit(node, prefix, op, [x], fa, params=specs, **attrs)
    else:
        cv.emit(node, "@root", op, [x], fa, params=specs, absolute_keys=True, **attrs)


def _keys(cv: Converter, node: fx.Node, a: dict[str, Any], leaves: tuple[str, ...]) -> str:
    return _owner(cv, node, {k: a[k] for k in leaves})


def _full(cv: Converter, arg: Any) -> str:
    return str(stored(cv, arg).target)


def _batch_norm(cv: Converter, node: fx.Node, x: str, a: dict[str, Any]) -> None:
    leaves = ("running_mean", "running_var", "weight", "bias")
    prefix = _keys(cv, node, a, leaves)
    x = cv.on_axis(node, x, 1)
    if (a["weight"] is None) != (a["bias"] is None) or (a["running_mean"] is None) != (
        a["running_var"] is None
    ):
        raise UnsupportedOpError(f"node {node.name!r}: batch_norm with half of its parameters")
    specs = [_spec(cv, _full(cv, a[k]), k, ("out",)) for k in ("weight", "bias") if a[k]]
    specs += [_spec(cv, _full(cv, a[k]), k, ("in",)) for k in leaves[:2] if a[k]]
    full = _full(cv, a["running_mean"]) if a["running_mean"] else None
    count = full and full.rpartition(".")[0] + ".num_batches_tracked"
    if count and count in cv.state:
        specs.append(ParamSpec("num_batches_tracked", (), (), "buffer"))
    attrs = {"eps": float(a["eps"]), "momentum": a["momentum"], "affine": a["weight"] is not None,
             "track_running_stats": a["running_mean"] is not None}  # fmt: skip
    _emit(cv, node, prefix, "batchnorm", x, 1, specs, **attrs)


def _group_norm(cv: Converter, node: fx.Node, x: str, a: dict[str, Any]) -> None:
    prefix = _keys(cv, node, a, ("weight", "bias"))
    x = cv.on_axis(node, x, 1)
    specs = [_spec(cv, _full(cv, a[k]), k, ("out",)) for k in ("weight", "bias") if a[k]]
    attrs = {"num_groups": int(a["num_groups"]), "eps": float(a["eps"]),
             "affine": a["weight"] is not None}  # fmt: skip
    _emit(cv, node, prefix, "groupnorm", x, 1, specs, **attrs)


def conv_attrs(weight_shape: tuple[int, ...], in_channels: int, a: dict[str, Any]) -> tuple[
    str, dict[str, Any]
]:  # fmt: skip
    """The op and attributes of a convolution call (as :mod:`.modules` reads ``nn.Conv*``)."""
    pad = a["padding"]
    padded = pad != "valid" if isinstance(pad, str) else any(
        int(p) != 0 for p in (pad if isinstance(pad, list | tuple) else [pad])
    )  # fmt: skip
    g = int(a["groups"])
    out = int(weight_shape[0])
    op = "conv" if g == 1 else ("dwconv" if g == in_channels == out else "grouped_conv")
    attrs = {"bias": a["bias"] is not None, "kernel": tuple(int(k) for k in weight_shape[2:]),
             "groups": g, "padded": padded}  # fmt: skip
    return op, attrs


def _conv(cv: Converter, node: fx.Node, x: str, a: dict[str, Any]) -> None:
    prefix = _keys(cv, node, a, ("weight", "bias"))
    x = cv.on_axis(node, x, 1)
    w = cv.state[_full(cv, a["weight"])]
    op, attrs = conv_attrs(tuple(w.shape), int(cv.shape[x][1]), a)
    in_role = "in" if op == "conv" else "none"
    roles = ("out", in_role) + ("none",) * (w.ndim - 2)
    if op == "grouped_conv":
        roles = ("none",) * w.ndim
    specs = [_spec(cv, _full(cv, a["weight"]), "weight", roles)]
    if a["bias"] is not None:
        specs.append(_spec(cv, _full(cv, a["bias"]), "bias", (roles[0],)))
    _emit(cv, node, prefix, op, x, 1, specs, **attrs)


def _linear(cv: Converter, node: fx.Node, x: str, a: dict[str, Any]) -> None:
    prefix = _keys(cv, node, a, ("weight", "bias"))
    x = cv.on_axis(node, x, -1)
    specs = [_spec(cv, _full(cv, a["weight"]), "weight", ("out", "in"))]
    if a["bias"] is not None:
        specs.append(_spec(cv, _full(cv, a["bias"]), "bias", ("out",)))
    _emit(cv, node, prefix, "linear", x, -1, specs, bias=a["bias"] is not None)


def _embedding(cv: Converter, node: fx.Node, x: str, a: dict[str, Any]) -> None:
    prefix = _keys(cv, node, a, ("weight",))
    if a["max_norm"] is not None:
        raise UnsupportedOpError(
            f"node {node.name!r}: F.embedding with max_norm renormalises the rows it reads"
            f"{where(node)}; symlab does not derive symmetries through it"
        )
    w = cv.state[_full(cv, a["weight"])]
    specs = [_spec(cv, _full(cv, a["weight"]), "weight", ("none", "out"))]
    _emit(cv, node, prefix, "embedding", x, -1, specs, num_embeddings=int(w.shape[0]))


_READERS: dict[Any, Callable[[Converter, fx.Node, str, dict[str, Any]], None]] = {
    F.batch_norm: _batch_norm, F.group_norm: _group_norm, F.linear: _linear,
    F.embedding: _embedding,
    F.conv1d: _conv, F.conv2d: _conv, F.conv3d: _conv,
    torch.conv1d: _conv, torch.conv2d: _conv, torch.conv3d: _conv,
}  # fmt: skip
#: Functional layers read as the op of the module owning their parameters.
LAYER_FUNCS = frozenset(_READERS)


def _own_parameters(cv: Converter, node: fx.Node, a: dict[str, Any]) -> bool:
    """Whether every parameter argument is a module's own parameter under its standard name
    (the subclass case this module reads); anything else is left to other readers."""
    leaves = [k for k in ("weight", "bias", "running_mean", "running_var") if k in a]
    for leaf in leaves:
        arg = stored(cv, a[leaf])
        if arg is None:
            continue
        if not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
            return False
        if str(arg.target).rpartition(".")[2] != leaf or str(arg.target) not in cv.state:
            return False
    keys = [str(stored(cv, a[k]).target) for k in leaves if a[k] is not None]
    owners = {k.rpartition(".")[0] for k in keys}
    called = {str(n.target) for n in cv.gm.graph.nodes if n.op == "call_module"}
    if owners & called:  # another layer's weight (tying): not this module's own forward
        return False
    return a.get("weight") is not None or node.target in (F.batch_norm, F.group_norm)


def reshaped_parameters(cv: Converter) -> set[fx.Node]:
    """The reshaping steps between a parameter and a functional layer call that reads it as
    its own (:func:`stored`): part of that layer's reading, never graph nodes of their own."""
    steps: set[fx.Node] = set()
    for node in cv.gm.graph.nodes:
        if node.op != "call_function" or node.target not in _READERS:
            continue
        a = call_args(node, _SIGNATURES[node.target])
        if not _own_parameters(cv, node, a):
            continue
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            arg = a.get(leaf)
            if not isinstance(arg, fx.Node) or stored(cv, arg) is arg:
                continue
            while arg.op != "get_attr":
                steps.add(arg)
                arg = arg.args[0]
    return steps


def read_layer_call(cv: Converter, node: fx.Node) -> bool:
    """Emit the graph op of a functional layer call on a module's own parameters; False when
    the call is not of that form (then other readers, or a refusal, handle it). Refuses (with
    :class:`UnsupportedOpError`) such a call it cannot read."""
    a = call_args(node, _SIGNATURES[node.target])
    if not _own_parameters(cv, node, a):
        return False
    x = a["input"]
    if not isinstance(x, fx.Node) or x not in cv.name:
        raise UnsupportedOpError(
            f"node {node.name!r}: {node.target.__name__} of a tensor symlab does not track"
            f"{where(node)}"
        )
    _READERS[node.target](cv, node, cv.name[x], a)
    return True


#: functional layers whose input carries its units on axis 1 (channels)
CHANNEL_FIRST = frozenset(LAYER_FUNCS - {F.linear})


_AVG_POOLS = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}


def pool_keeps_shift(node: fx.Node) -> bool:
    """Whether a pooling call maps ``x + c`` (``c`` per channel) to ``pool(x) + c``: means,
    adaptive average pools and max pools do; an average pool does unless zero padding enters
    its averages.

    >>> g = fx.Graph(); x = g.placeholder("x")
    >>> pool_keeps_shift(g.call_function(F.avg_pool2d, (x, 3), {"padding": 1}))
    False
    """
    if node.target not in _AVG_POOLS:
        return True
    names = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
    a = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
    pad = a.get("padding", 0)
    unpadded = all(int(p) == 0 for p in (pad if isinstance(pad, list | tuple) else [pad]))
    return (unpadded and not a.get("ceil_mode", False)) or not a.get("count_include_pad", True)
