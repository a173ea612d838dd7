"""A product with a module's own weight written by hand: ``x @ self.W``, ``x @ self.W.T``,
``torch.mm(x, self.W)``, ``torch.addmm(self.b, x, self.W)``, ``torch.einsum("bi,oi->bo", x,
self.W)``.

Each is a linear map of the last axis of ``x`` — ``nn.Linear`` with the weight stored
``(out, in)`` when the product reads ``W`` transposed (``W.T``, ``W.t()``, ``W.mT``,
``W.transpose(0, 1)``, ``W.permute(1, 0)``, an einsum reading ``oi``), a ``linear_t`` (GPT-2's
``Conv1D``, :mod:`symlab.symmetry.linear_t_rules`) when it reads ``W`` as stored ``(in, out)``
— so it has the symmetries of a linear layer. Read only where nothing else can see the
weight: ``W`` is a 2-D tensor of the ``state_dict`` (a parameter, or a persistent buffer, which
symlab moves like one), read by this product alone (through the transpose, which nothing else
reads), and no other key holds the same tensor. A module that owns the weight and is called as
well reads it too: one tensor in two places, which :mod:`symlab.symmetry.sharing` ties (the
calls of one op port by port, an embedding's table read as an output layer axis by axis). Anything
else stays what it was: an opaque product (its input, output and weight fixed: sound). An
``x`` whose units lie on another axis than the last is fixed in front of the layer
(:meth:`Converter.on_axis`), and the layer's own units are derived as usual.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx

from symlab.frontend.patterns.registry import register_pattern
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["ParamMatmul", "einsum_layout", "emit_param_matmul", "find_param_matmul"]

_MATMUL = {operator.matmul, torch.matmul, torch.mm, "matmul", "mm"}
_ADDMM = {torch.addmm, "addmm"}


@dataclass(frozen=True)
class ParamMatmul:
    """One ``x W`` (``stored="in_out"``) or ``x Wᵀ`` (``"out_in"``), plus ``b``."""

    x: fx.Node
    out: fx.Node
    weight: str
    bias: str | None
    stored: str
    nodes: frozenset[fx.Node]


def _ints(args: Any) -> list[int] | None:
    flat = list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
    return flat if all(isinstance(a, int) for a in flat) else None


def _transposed(n: fx.Node) -> fx.Node | None:
    """The tensor ``n`` transposes, when ``n`` swaps the two axes of a 2-D tensor."""
    src = n.args[0] if n.args else None
    if not isinstance(src, fx.Node) or n.kwargs:
        return None
    if n.op == "call_function" and n.target is getattr and n.args[1] in ("T", "mT"):
        return src
    if (n.op, n.target) in (("call_method", "t"), ("call_function", torch.t)) and len(n.args) == 1:
        return src
    rest = _ints(n.args[1:])
    if n.target in ("transpose", torch.transpose, "swapaxes", torch.swapaxes) and rest:
        return src if len(rest) == 2 and {r % 2 for r in rest} == {0, 1} else None
    if n.target in ("permute", torch.permute) and rest:
        return src if [r % 2 for r in rest] == [1, 0] else None
    return None


_TOKEN = re.compile(r"\.\.\.|[a-zA-Z]")


def einsum_layout(equation: str) -> tuple[int, str] | None:
    """``(i, stored)`` when the two-operand ``equation`` is a product of operand ``1 - i``'s last
    axis with the 2-D operand ``i`` (a weight stored ``"in_out"`` or ``"out_in"``), whose output
    axis replaces that last axis; None for anything else.

    >>> einsum_layout("bti,oi->bto"), einsum_layout("io,...i->...o"), einsum_layout("bi,bo->io")
    ((1, 'out_in'), (0, 'in_out'), None)
    """
    eq = equation.replace(" ", "")
    if eq.count("->") != 1 or eq.count(",") != 1:
        return None
    lhs, out = eq.split("->")
    ops = [_TOKEN.findall(s) for s in lhs.split(",")]
    so = _TOKEN.findall(out)
    if "".join(so) != out or any("".join(t) != s for t, s in zip(ops, lhs.split(","), strict=True)):
        return None
    for i in (1, 0):
        w, x = ops[i], ops[1 - i]
        if len(w) != 2 or "..." in w or w[0] == w[1] or not x or len(set(x)) != len(x):
            continue
        c = x[-1]
        if c == "..." or c not in w:
            continue
        o = w[1] if w[0] == c else w[0]
        if o in x or so != [*x[:-1], o]:
            continue
        return i, "in_out" if w[0] == c else "out_in"
    return None


def _weight(n: Any, params: dict[str, torch.Tensor], stored: str | None) -> tuple[
    str, str, list[fx.Node]
] | None:  # fmt: skip
    """``(key, stored, nodes)`` of a product operand that is a 2-D tensor of the state read
    directly (``stored``, ``"in_out"`` for a matmul) or transposed (a matmul only)."""
    if not isinstance(n, fx.Node):
        return None
    if n.op == "get_attr":
        key, stored, nodes = str(n.target), stored or "in_out", [n]
    else:
        src = _transposed(n)
        if stored is not None or src is None or src.op != "get_attr" or len(n.users) != 1:
            return None
        key, stored, nodes = str(src.target), "out_in", [src, n]
    if key not in params or params[key].ndim != 2 or len(nodes[0].users) != 1:
        return None
    return key, stored, nodes


def _operands(n: fx.Node) -> tuple[Any, Any, Any, str | None] | None:
    """``(bias, x, weight operand, layout)`` of a product node: bias None for ``matmul`` and
    ``einsum``, the layout an einsum reads the weight in (None: as stored, or transposed)."""
    if n.op not in ("call_function", "call_method") or n.kwargs:
        return None
    if n.target in _MATMUL and len(n.args) == 2:
        return None, n.args[0], n.args[1], None
    if n.target in _ADDMM and len(n.args) == 3:
        return (*n.args, None)
    if n.target is torch.einsum and n.args and isinstance(n.args[0], str):
        tensors = n.args[1:]
        if len(tensors) == 1 and isinstance(tensors[0], list | tuple):
            tensors = tuple(tensors[0])
        layout = einsum_layout(n.args[0]) if len(tensors) == 2 else None
        if layout is not None:
            return None, tensors[1 - layout[0]], tensors[layout[0]], layout[1]
    return None


def _match(n: fx.Node, params: dict[str, torch.Tensor]) -> ParamMatmul | None:
    ops = _operands(n)
    if ops is None:
        return None
    b, x, w, layout = ops
    got = _weight(w, params, layout)
    if got is None or not isinstance(x, fx.Node) or x.op == "get_attr" or x is w:
        return None
    key, stored, nodes = got
    bkey = None
    if b is not None:
        if not (isinstance(b, fx.Node) and b.op == "get_attr" and len(b.users) == 1):
            return None
        bkey = str(b.target)
        size = params[key].shape[1 if stored == "in_out" else 0]
        if bkey not in params or tuple(params[bkey].shape) != (size,):
            return None
        nodes.append(b)
    return ParamMatmul(x, n, key, bkey, stored, frozenset(nodes))


def _state(gm: fx.GraphModule) -> dict[str, torch.Tensor]:
    """The state's tensors held under one key only (a tied tensor is left opaque)."""
    tensors = gm.state_dict(keep_vars=True)
    count: dict[int, int] = {}
    for t in tensors.values():
        count[id(t)] = count.get(id(t), 0) + 1
    return {k: t for k, t in tensors.items() if count[id(t)] == 1}


def find_param_matmul(gm: fx.GraphModule) -> tuple[dict[fx.Node, ParamMatmul], set[fx.Node]]:
    """Every product of a tensor with a weight only it reads, keyed by the product's node."""
    params = _state(gm)
    targets: dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "get_attr":
            targets[str(n.target)] = targets.get(str(n.target), 0) + 1
    found: dict[fx.Node, ParamMatmul] = {}
    for n in gm.graph.nodes:
        m = _match(n, params)
        if m is not None and all(targets[k] == 1 for k in (m.weight, m.bias) if k is not None):
            found[n] = m
    return found, {k for m in found.values() for k in m.nodes}


def emit_param_matmul(cv: Converter, m: ParamMatmul) -> str:
    """The ``linear`` (``x Wᵀ``) or ``linear_t`` (``x W``) node of ``m``, its keys absolute."""
    if any(k not in cv.state for k in (m.weight, m.bias) if k is not None):
        # a non-persistent buffer (torch.fx's copy of the module keeps it as a buffer): a
        # constant no action moves, so the product is opaque, or fixed data itself
        if m.out not in cv.carrying or m.x not in cv.name:
            cv.fixed(m.out)
            return cv.name.get(m.out, "")
        return cv.emit(m.out, f"@{m.out.name}", "opaque", [cv.name[m.x]])
    x = cv.on_axis(m.out, cv.name[m.x], -1)
    w = cv.state[m.weight]
    kind = "param" if isinstance(w, torch.nn.Parameter) else "buffer"
    roles = ("in", "out") if m.stored == "in_out" else ("out", "in")
    specs = [ParamSpec("weight", tuple(w.shape), roles, kind)]  # type: ignore[arg-type]
    keys = {"weight": m.weight}
    if m.bias is not None:
        b = cv.state[m.bias]
        kind = "param" if isinstance(b, torch.nn.Parameter) else "buffer"
        specs.append(ParamSpec("bias", tuple(b.shape), ("out",), kind))  # type: ignore[arg-type]
        keys["bias"] = m.bias
    op = "linear_t" if m.stored == "in_out" else "linear"
    extra = {"weight_key": "weight", "bias_key": "bias" if m.bias else None}
    return cv.emit(m.out, f"@{m.out.name}", op, [x], -1, specs, bias=m.bias is not None,
                   param_keys=keys, **(extra if op == "linear_t" else {}))  # fmt: skip


register_pattern("param_matmul", find_param_matmul, emit_param_matmul, yields=True)
