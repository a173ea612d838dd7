"""Binary ops whose operands need a closer look than "two tensors".

* **The same tensor twice.** ``x * x`` is a square, not a product of two units (it admits
  no sign flips and no scalings: permutations only); ``x + x`` is ``2x``; ``x - x`` and ``x / x``
  are constants (opaque). ``torch.cat([x, x])`` is two copies of the same units, which must move
  together: each repeat becomes an identity copy of ``x``, so the concatenation keeps its width.
* **A tensor constant along the features** — a 0-dim or one-element parameter (``x *
  self.alpha``), a buffer or constant broadcast over the feature axis (shape ``(H, W)`` times
  ``(B, C, H, W)``): multiplying by it commutes with every map of the units (a ``scale``),
  adding it commutes with permutations (a ``shift_const``); the constant itself never moves.
  Dividing *by* a tensor, or a constant divided by one, is no such thing (opaque).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx

from symlab.frontend.functions import ADD_FUNCS, MUL_FUNCS

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["cat_parts", "constant_inputs", "read_special_binary"]

_DIV = {operator.truediv, torch.div, "div", operator.itruediv}
_SUB = {operator.sub, torch.sub, "sub", operator.isub}


def _constant_shape(cv: Converter, arg: Any) -> tuple[int, ...] | None:
    """The shape of a constant operand (a module parameter, buffer or traced constant)."""
    if not (isinstance(arg, fx.Node) and arg.op == "get_attr"):
        return None
    try:
        value = cv.gm.get_parameter(str(arg.target))
    except AttributeError:
        try:
            value = cv.gm.get_buffer(str(arg.target))
        except AttributeError:
            value = getattr(cv.gm, str(arg.target), None)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _flat_along_features(shape: tuple[int, ...], x_shape: tuple[int, ...], fa: int) -> bool:
    """Whether a tensor of ``shape`` broadcast against ``x`` is constant along ``x``'s axis
    ``fa`` (absent there, or of size 1), and broadcasting does not grow ``x``."""
    from_right = len(x_shape) - fa
    if len(shape) > len(x_shape):
        return False
    return len(shape) < from_right or shape[len(shape) - from_right] == 1


def read_special_binary(cv: Converter, node: fx.Node) -> bool:
    """Emit ``node`` when it is a binary op with the same tensor twice, or with a constant
    along the features (see the module docstring); False when it is neither."""
    fn = node.target
    if (fn not in MUL_FUNCS and fn not in ADD_FUNCS) or len(node.args) != 2 or node.kwargs:
        return False
    a, b = node.args
    same = all(isinstance(t, fx.Node) and t in cv.name for t in (a, b))
    if same and cv.name[a] == cv.name[b]:  # also a module called twice on one input
        x = cv.name[a]
        if fn in MUL_FUNCS and fn not in _DIV:
            cv.emit(node, f"@{node.name}", "activation", [x], fn="square")
        elif fn in ADD_FUNCS and fn not in _SUB:
            cv.emit(node, f"@{node.name}", "scale", [x])
        else:
            cv.emit(node, f"@{node.name}", "opaque", [x])
        return True
    for tensor, const, const_first in ((a, b, False), (b, a, True)):
        if not (isinstance(tensor, fx.Node) and tensor in cv.name):
            continue
        shape = _constant_shape(cv, const)
        x = cv.name[tensor]
        if shape is None or not _flat_along_features(shape, cv.shape[x], cv.fa[x]):
            continue
        if fn in _DIV and const_first:
            op = "opaque"  # c / x
        elif fn in MUL_FUNCS:
            op = "scale"
        else:
            op = "shift_const"
        cv.emit(node, f"@{node.name}", op, [x])
        return True
    return False


def cat_parts(cv: Converter, node: fx.Node, ins: list[str]) -> list[str]:
    """The concatenated tensors in order, each repeat of a tensor as an identity copy of it."""
    tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
    if not isinstance(tensors, list | tuple) or not all(
        isinstance(t, fx.Node) and t in cv.name for t in tensors
    ):
        return ins
    parts: list[str] = []
    for i, t in enumerate(tensors):
        x = cv.name[t]
        if x in parts:
            x = cv.add_node(f"@{node.name}#copy{i}", "activation", [x], cv.shape[x], cv.fa[x],
                            fn="identity")  # fmt: skip
        parts.append(x)
    return parts


def constant_inputs(cv: Converter, node: fx.Node) -> None:
    """Give the module parameters and buffers a module call reads directly (an embedding of a
    buffer of positions) a graph node each: a fixed input, never moved (sound)."""
    for a in node.args:
        if isinstance(a, fx.Node) and a.op == "get_attr" and a not in cv.name:
            shape = _constant_shape(cv, a)
            if shape is not None:
                cv.name[a] = cv.add_node(f"@{a.name}", "input", [], shape, len(shape) - 1)
