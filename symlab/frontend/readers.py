"""Function calls read with their arguments: ops whose symmetry depends on an exponent, a
bound, an axis or a parameter argument.

:data:`CALL_READERS` maps a function or tensor-method name to a reader
``reader(converter, node) -> bool`` that emits the call's graph node(s) and returns True, or
returns False to leave the call to the converter's tables (its tensor argument is no graph
tensor). A reader makes an op *opaque* (input and output fixed: sound) where an argument is
not a constant it can read (a tensor exponent or bound), and refuses with
:class:`~symlab.errors.UnsupportedOpError` where even that would be unsound. Functions with
parameter arguments (``F.linear``, ``F.layer_norm``, ``F.prelu``) are in
:mod:`symlab.frontend.readers_params`.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch.nn import functional as F

from symlab.frontend.axes import expand_index

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["CALL_READERS", "arg", "reads"]

Reader = Callable[["Converter", fx.Node], bool]
CALL_READERS: dict[Any, Reader] = {}


def reads(*functions: Any) -> Callable[[Reader], Reader]:
    """Decorator: make ``reader`` the reader of ``functions`` (functions or method names)."""

    def register(reader: Reader) -> Reader:
        for f in functions:
            CALL_READERS[f] = reader
        return reader

    return register


def arg(node: fx.Node, i: int, name: str, default: Any = None) -> Any:
    """Argument ``i`` (counting the tensor ``self`` as 0) of a call, positional or by name.

    >>> g = fx.Graph(); x = g.placeholder("x")
    >>> n = g.call_function(torch.clamp, (x,), {"max": 2.0})
    >>> arg(n, 1, "min"), arg(n, 2, "max")
    (None, 2.0)
    """
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _tensor(cv: Converter, a: Any) -> str | None:
    return cv.name.get(a) if isinstance(a, fx.Node) else None


def _number(a: Any) -> float | None:
    return float(a) if isinstance(a, int | float) else None


def _out_shape(node: fx.Node, index: int | None = None) -> tuple[int, ...]:
    tm = node.meta["tensor_meta"]
    return tuple((tm if index is None else tm[index]).shape)


def _dims(dims: Any, nd: int) -> list[int] | None:
    """Reduced dimensions as non-negative ints (all of them for None or ``()``), or None."""
    if dims is None or (isinstance(dims, list | tuple) and len(dims) == 0):
        return list(range(nd))
    dims = dims if isinstance(dims, list | tuple) else [dims]
    if not all(isinstance(d, int) for d in dims):
        return None
    return sorted({d % max(nd, 1) for d in dims})


@reads(operator.neg, torch.neg, "neg", torch.negative, "negative")
def _neg(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    cv.emit(node, f"@{node.name}", "scale", [x])  # -x: a scaling by -1, linear
    return True


@reads(torch.pow, operator.pow, "pow", torch.square, "square")
def _pow(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    square = node.target in (torch.square, "square")
    p = 2 if square else _number(arg(node, 1, "exponent"))
    if x is None or p is None:
        if not cv.tensor_args(node):
            return False
        cv.opaque(node)  # a tensor exponent, or a constant base: not modelled (fixed)
        return True
    cv.emit(node, f"@{node.name}", "pow", [x], exponent=float(p))
    return True


_CLAMP_MIN = {torch.clamp_min, "clamp_min"}
_CLAMP_MAX = {torch.clamp_max, "clamp_max"}


@reads(torch.clamp, "clamp", torch.clip, "clip", *_CLAMP_MIN, *_CLAMP_MAX, F.hardtanh)
def _clamp(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    if node.target is F.hardtanh:
        lo, hi = arg(node, 1, "min_val", -1.0), arg(node, 2, "max_val", 1.0)
    elif node.target in _CLAMP_MIN:
        lo, hi = arg(node, 1, "min"), None
    elif node.target in _CLAMP_MAX:
        lo, hi = None, arg(node, 1, "max")
    else:
        lo, hi = arg(node, 1, "min"), arg(node, 2, "max")
    if any(v is not None and _number(v) is None for v in (lo, hi)):
        cv.opaque(node)  # tensor bounds (per unit, learned): not modelled (fixed)
        return True
    lo_f = -math.inf if lo is None else float(lo)
    hi_f = math.inf if hi is None else float(hi)
    cv.emit(node, f"@{node.name}", "clamp", [x], lo=lo_f, hi=hi_f)
    return True


@reads(F.normalize)
def _normalize(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    cv.emit(node, f"@{node.name}", "normalize", [x])  # along any axis: see reduce_rules
    return True


_VECTOR_NORM = {torch.linalg.vector_norm, torch.linalg.norm}


@reads(torch.norm, "norm", *_VECTOR_NORM)
def _norm(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    names = ("ord", "dim", "keepdim") if node.target in _VECTOR_NORM else ("p", "dim", "keepdim")
    dims = _dims(arg(node, 2, names[1]), len(cv.shape[x]))
    keepdim = bool(arg(node, 3, names[2], False))
    if dims is None:
        cv.opaque(node)
        return True
    _reduction(cv, node, x, dims, keepdim, "norm", _out_shape(node))
    return True


def _reduction(cv: Converter, node: fx.Node, x: str, dims: list[int], keepdim: bool, op: str,
               shape: tuple[int, ...]) -> str:  # fmt: skip
    """A reduction over ``dims``: over the units (its result fixed), or over other axes unit
    by unit (``norm`` per unit, or ``pool_max``)."""
    fa, name = cv.fa[x], f"@{node.name}"
    if fa in dims:
        attrs = {"over_units": True} if op == "norm" else {}
        out_fa = fa if keepdim else max(len(shape) - 1, 0)
        cv.add_node(name, "norm" if op == "norm" else "reduce_max", [x], shape, out_fa, **attrs)
    else:
        out_fa = fa if keepdim else fa - sum(d < fa for d in dims)
        cv.add_node(name, "norm" if op == "norm" else "pool_max", [x], shape, out_fa)
    cv.name[node] = name
    return name


_MAXIMA = {torch.max, "max", torch.min, "min"}


@reads(torch.amax, "amax", torch.amin, "amin", *_MAXIMA)
def _max(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    second = arg(node, 1, "dim", node.kwargs.get("other"))
    if node.target in _MAXIMA and isinstance(second, fx.Node):
        return _maximum(cv, node)  # torch.max(a, b): elementwise
    if node.target in _MAXIMA and second is None:
        _reduction(cv, node, x, list(range(len(cv.shape[x]))), False, "max", _out_shape(node))
        return True
    dims = _dims(second if second is not None else (), len(cv.shape[x]))
    keepdim = bool(arg(node, 2, "keepdim", False))
    if dims is None:
        cv.opaque(node)
        return True
    if node.target not in _MAXIMA:  # amax / amin: one tensor
        _reduction(cv, node, x, dims, keepdim, "max", _out_shape(node))
        return True
    made: dict[int, str] = {}

    def pick(index: int, consumer: fx.Node) -> str:  # each made when read (none may dangle)
        if index not in made and index == 0:
            made[0] = _reduction(cv, node, x, dims, keepdim, "max", _out_shape(node, 0))
        elif index not in made:  # the indices name units or positions: fix what they index
            made[1] = cv.add_node(f"@{node.name}#indices", "opaque", [x], _out_shape(node, 1),
                                  len(_out_shape(node, 1)) - 1)  # fmt: skip
        return made[index]

    cv.tuples[node] = pick
    for user in node.users:  # torch.max(x, 1).values / .indices: fields of the named tuple
        if user.target is getattr and user.args[1] in ("values", "indices"):
            cv.name[user] = pick(0 if user.args[1] == "values" else 1, user)
    return True


@reads(torch.maximum, torch.minimum, torch.fmax, torch.fmin)
def _maximum(cv: Converter, node: fx.Node) -> bool:
    a, b = arg(node, 0, "input"), arg(node, 1, "other", node.kwargs.get("other"))
    ins = [_tensor(cv, a), _tensor(cv, b)]
    if any(t is None for t in ins):
        if not cv.tensor_args(node):
            return False
        cv.opaque(node)  # a constant or a parameter operand: not modelled (fixed)
        return True
    ins = list(dict.fromkeys(ins))  # max(x, x) = x
    fa = cv.aligned_axis(node, ins)  # type: ignore[arg-type]
    if fa is None:
        cv.opaque(node)  # broadcasting across feature axes: not modelled
        return True
    cv.emit(node, f"@{node.name}", "maximum", ins, fa)  # type: ignore[arg-type]
    return True


@reads(torch.flip, "flip", torch.fliplr, "fliplr", torch.flipud, "flipud", torch.roll, "roll")
def _flip(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    nd, fa = len(cv.shape[x]), cv.fa[x]
    if node.target in (torch.fliplr, "fliplr"):
        dims: Any = [1]
    elif node.target in (torch.flipud, "flipud"):
        dims = [0]
    elif node.target in (torch.roll, "roll"):
        dims = arg(node, 2, "dims")
        dims = None if dims is None or dims == [] or dims == () else dims  # None: flattened
    else:
        dims = arg(node, 1, "dims")
    got = _dims(dims, nd) if dims is not None else None
    if got is None or fa in got:
        cv.opaque(node)  # reverses or rolls the units themselves: not modelled (fixed)
        return True
    cv.emit(node, f"@{node.name}", "relayout", [x], fa)  # positions move, units stay whole
    return True


@reads(F.pad)
def _pad(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    pad, mode = arg(node, 1, "pad"), arg(node, 2, "mode", "constant")
    value = arg(node, 3, "value", None)
    nd, fa = len(cv.shape[x]), cv.fa[x]
    value_f = 0.0 if value is None else _number(value)
    if not isinstance(pad, list | tuple) or not all(isinstance(p, int) for p in pad) or \
            value_f is None or not isinstance(mode, str):  # fmt: skip
        cv.opaque(node)
        return True
    padded = {nd - 1 - i for i in range(len(pad) // 2) if pad[2 * i] or pad[2 * i + 1]}
    if fa in padded:
        cv.opaque(node)  # new units of constants: not modelled (fixed)
        return True
    cv.emit(node, f"@{node.name}", "pad", [x], fa, mode=mode, value=value_f)
    return True


@reads(F.glu)
def _glu(cv: Converter, node: fx.Node) -> bool:
    x = _tensor(cv, arg(node, 0, "input"))
    if x is None:
        return False
    dim, fa = arg(node, 1, "dim", -1), cv.fa[x]
    shape = _out_shape(node)
    if not isinstance(dim, int):
        return False
    if dim % len(cv.shape[x]) != fa:
        cv.emit(node, f"@{node.name}", "glu", [x], fa)  # halves of positions, per unit
        return True
    gate = cv.add_node(f"@{node.name}#gate", "glu_gate", [x], shape, fa)
    cv.emit(node, f"@{node.name}", "glu", [x, gate], fa)
    return True


def _part(cv: Converter, x: str, shape: tuple[int, ...], start: int, name: str) -> str:
    """A ``split_part`` node: units ``start:start + width`` of ``x`` (same rank and axis)."""
    fa = cv.fa[x]
    return cv.add_node(name, "split_part", [x], shape, fa, start=start, stop=start + shape[fa])


@reads(torch.split, "split", torch.chunk, "chunk", torch.tensor_split, "tensor_split")
def _split(cv: Converter, node: fx.Node) -> bool:
    """A cut of the units into consecutive parts (``torch.split``/``chunk``/``tensor_split``
    along the units): one ``split_part`` node per part, made when read (its rule derives the
    parts only where they tile the input). A cut along another axis, or a tuple read other
    than item by item, is left to the converter's tables (opaque)."""
    x = _tensor(cv, node.args[0] if node.args else None)
    metas = node.meta.get("tensor_meta")
    dim = arg(node, 2, "dim", 0)
    if x is None or not isinstance(metas, list | tuple) or not isinstance(dim, int):
        return False
    fa = cv.fa[x]
    if dim % len(cv.shape[x]) != fa or any(
        u.target is not operator.getitem or not isinstance(u.args[1], int) for u in node.users
    ):
        return False
    shapes = [tuple(int(s) for s in m.shape) for m in metas]
    starts = [0, *itertools.accumulate(s[fa] for s in shapes)]
    made: dict[int, str] = {}

    def pick(index: int, consumer: fx.Node) -> str:
        i = index % len(shapes)
        if i not in made:
            made[i] = _part(cv, x, shapes[i], starts[i], f"@{node.name}#{i}")
        return made[i]

    cv.tuples[node] = pick
    return True


@reads(operator.getitem, "narrow", torch.narrow)
def _unit_slice(cv: Converter, node: fx.Node) -> bool:
    """``x[..., a:b]`` or ``x.narrow(dim, a, n)`` along the units, every other axis whole: a
    ``split_part`` (the parts of one tensor are derived where they tile it). Anything else
    (indexing other axes, steps, tensors as indices, items of tuples) is left to the converter's
    tables."""
    x = _tensor(cv, node.args[0] if node.args else None)
    if x is None or node.args[0] in cv.tuples or not cv.shape[x]:
        return False
    nd, fa = len(cv.shape[x]), cv.fa[x]
    width = cv.shape[x][fa]
    if node.target is operator.getitem:
        full = expand_index(node.args[1], nd)
        if full is None or len(full) != nd or not all(isinstance(k, slice) for k in full):
            return False  # (an int drops an axis, a None adds one)
        cut = full[fa]
        if any(k != slice(None) for j, k in enumerate(full) if j != fa):
            return False
        if not all(v is None or isinstance(v, int) for v in (cut.start, cut.stop, cut.step)):
            return False
        start, stop, step = cut.indices(width)
    else:
        dim, start, length = arg(node, 1, "dim"), arg(node, 2, "start"), arg(node, 3, "length")
        if not all(isinstance(v, int) for v in (dim, start, length)) or dim % nd != fa:
            return False
        start = start + width if start < 0 else start
        stop, step = start + length, 1
    if step != 1 or not 0 <= start < stop <= width:
        return False
    shape = cv.meta_shape(node)
    if shape is None or shape[fa] != stop - start:
        return False
    cv.name[node] = _part(cv, x, shape, start, f"@{node.name}")
    return True
