"""Recognise RMSNorm and LayerNorm written by hand in a torch.fx graph.

The forms of real code (Llama, Mistral, Qwen, Gemma, T5, BERT-era hand-written LayerNorm)::

    v = x.float().pow(2).mean(-1, keepdim=True)          # or x.square(), x * x, x ** 2
    y = x * torch.rsqrt(v + eps)                         # or x / torch.sqrt(v + eps),
                                                         #    x / (v.sqrt() + eps), v ** -0.5
    return self.weight * y.to(dtype)                     # or y * (1 + self.weight) (Gemma)

    u = x.mean(-1, keepdim=True)                         # LayerNorm: centred first
    s = (x - u).pow(2).mean(-1, keepdim=True)            # or x.var(-1, keepdim=True, ...)
    return self.weight * (x - u) / torch.sqrt(s + eps) + self.bias

become one ``rmsnorm`` / ``layernorm`` node with the symmetries of the module versions
(Zhang & Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019: a common scale of the
input is divided out, up to ``eps``). A weight read as ``c + w`` (Gemma's ``1 + weight``)
becomes an ``rmsnorm_offset`` / ``layernorm_offset`` node: a per-unit scale ``d`` of the output
then maps ``w ↦ d ⊙ (c + w) − c`` (:mod:`symlab.symmetry.norm_rules`). Casts (``.to``,
``.float``, ``.type_as``) may stand anywhere. The match is proven step by step: the statistic is
a mean over the last axis (kept) of the square of the input (or of the input minus its own mean
over that axis), the input is multiplied by its inverse root (or divided by its root), and the
affine parameters are vectors of the input's width. Any other op, any reader outside the match,
or a reduction over another axis leaves the nodes to the converter (fail closed).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx

from symlab.frontend.patterns.registry import register_pattern
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["NormMatch", "emit_norm", "find_norms"]

_CASTS = {"to", "float", "double", "half", "bfloat16", "type_as", "type", "contiguous"}
_MEAN = {torch.mean, "mean"}
_VAR = {torch.var, "var"}
_POW = {torch.pow, "pow", operator.pow}
_SQUARE = {torch.square, "square"}
_MUL = {operator.mul, torch.mul, "mul"}
_DIV = {operator.truediv, torch.div, "div"}
_ADD = {operator.add, torch.add, "add"}
_SUB = {operator.sub, torch.sub, "sub"}
_RSQRT = {torch.rsqrt, "rsqrt"}
_SQRT = {torch.sqrt, "sqrt"}


@dataclass(frozen=True)
class NormMatch:
    """One recognised normalisation: its input, output, parameters and the nodes it swallows."""

    x: fx.Node
    out: fx.Node
    kind: str  # "rmsnorm" | "layernorm"
    eps: float
    weight: str | None  # state_dict keys
    bias: str | None
    offset: float  # the weight is read as ``offset + weight``
    nodes: frozenset[fx.Node]


class _NoMatch(Exception):
    pass


def _req(cond: bool) -> None:
    if not cond:
        raise _NoMatch


def _shape(n: Any) -> tuple[int, ...] | None:
    tm = n.meta.get("tensor_meta") if isinstance(n, fx.Node) else None
    return tuple(int(s) for s in tm.shape) if hasattr(tm, "shape") else None


def _arg(n: fx.Node, i: int, name: str, default: Any = None) -> Any:
    return n.args[i] if len(n.args) > i else n.kwargs.get(name, default)


def _is(n: Any, targets: set[Any]) -> bool:
    return (
        isinstance(n, fx.Node) and n.op in ("call_function", "call_method") and n.target in targets
    )


def _number(a: Any) -> float | None:
    return float(a) if isinstance(a, int | float) and not isinstance(a, bool) else None


class _Walk:
    """The nodes of one candidate, collected while its form is proven."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.nodes: set[fx.Node] = set()
        self.params = dict(gm.named_parameters())

    def uncast(self, n: Any) -> fx.Node:
        """``n`` without the casts in front of it (they join the match)."""
        _req(isinstance(n, fx.Node))
        while _is(n, _CASTS):
            self.nodes.add(n)
            n = n.args[0]
            _req(isinstance(n, fx.Node))
        return n

    def last_axis(self, n: fx.Node, src: fx.Node) -> None:
        """``n`` reduces ``src`` over its last axis, keeping it."""
        shape = _shape(src)
        _req(shape is not None and len(shape) >= 1)
        dim = _arg(n, 1, "dim")
        dims = list(dim) if isinstance(dim, list | tuple) else [dim]
        _req(len(dims) == 1 and isinstance(dims[0], int) and dims[0] % len(shape) == len(shape) - 1)
        _req(_arg(n, 2 if n.target in _MEAN else 99, "keepdim", False) is True)

    def param(self, n: Any, width: int) -> str:
        """The key of a parameter vector of ``width`` entries read at ``n`` (casts allowed)."""
        n = self.uncast(n)
        _req(n.op == "get_attr" and str(n.target) in self.params)
        _req(tuple(self.params[str(n.target)].shape) == (width,))
        self.nodes.add(n)
        return str(n.target)

    def square_of(self, n: fx.Node) -> fx.Node:
        """The ``z`` of ``z²`` at ``n``."""
        if _is(n, _POW):
            _req(_number(n.args[1] if len(n.args) > 1 else n.kwargs.get("exponent")) == 2.0)
            return n.args[0]  # type: ignore[return-value]
        if _is(n, _SQUARE):
            return n.args[0]  # type: ignore[return-value]
        _req(_is(n, _MUL) and len(n.args) == 2 and n.args[0] is n.args[1])
        return n.args[0]  # type: ignore[return-value]

    def centred(self, n: fx.Node) -> fx.Node | None:
        """``x`` when ``n`` is ``x - x.mean(-1, keepdim=True)`` (casts allowed), else None."""
        if not _is(n, _SUB) or len(n.args) != 2:
            return None
        a, m = n.args
        if not _is(m, _MEAN) or not isinstance(a, fx.Node):
            return None
        x = self.uncast(a)
        try:
            self.last_axis(m, m.args[0])  # type: ignore[arg-type]
        except _NoMatch:
            return None
        if self.uncast(m.args[0]) is not x:
            return None
        self.nodes |= {n, m}
        return x


def _match(stat: fx.Node, gm: fx.GraphModule) -> NormMatch:
    w = _Walk(gm)
    w.nodes.add(stat)
    if _is(stat, _VAR):  # var centres by itself: LayerNorm
        w.last_axis(stat, stat.args[0])  # type: ignore[arg-type]
        x, kind = w.uncast(stat.args[0]), "layernorm"
    else:
        _req(_is(stat, _MEAN))
        sq = stat.args[0]
        _req(isinstance(sq, fx.Node))
        w.last_axis(stat, sq)  # type: ignore[arg-type]
        w.nodes.add(sq)  # type: ignore[arg-type]
        z = w.uncast(w.square_of(sq))  # type: ignore[arg-type]
        x = w.centred(z)
        kind = "rmsnorm" if x is None else "layernorm"
        x = z if x is None else x
    width = _shape(x)[-1]  # type: ignore[index]
    # the root of the statistic (eps inside or outside the root)
    eps, n, inverse = 0.0, _only_user(stat), None
    if _is(n, _ADD):
        eps = _eps(n, stat)
        w.nodes.add(n)
        prev, n = n, _only_user(n)
    else:
        prev = stat
    if _is(n, _RSQRT):
        inverse = True
    elif _is(n, _SQRT):
        inverse = False
    elif _is(n, _POW) and n.args[0] is prev:
        inverse = {-0.5: True, 0.5: False}.get(_number(n.args[1]))  # type: ignore[arg-type]
    _req(inverse is not None)
    w.nodes.add(n)
    root = n
    if not inverse and eps == 0.0 and _is(_only_user(root), _ADD):  # x / (sqrt(v) + eps)
        nxt = _only_user(root)
        eps = _eps(nxt, root)
        w.nodes.add(nxt)
        root = nxt
    # the normalised input: x * r or x / s, x (centred for LayerNorm) possibly cast
    (y,) = [u for u in root.users]
    _req(_is(y, _MUL if inverse else _DIV) and len(y.args) == 2)
    other = y.args[1] if y.args[0] is root else y.args[0]
    _req(inverse or y.args[1] is root)
    _req(isinstance(other, fx.Node))
    base = w.uncast(other)
    if kind == "layernorm":
        _req(w.centred(base) is x)
    else:
        _req(base is x)
    w.nodes.add(y)
    # affine: * weight (or * (c + weight)), then + bias; casts anywhere
    out, weight, bias, offset = y, None, None, 0.0
    out = _casts_after(out, w)
    n = _sole_user(out)
    if _is(n, _MUL) and len(n.args) == 2:
        o = n.args[1] if n.args[0] is out else n.args[0]
        try:
            weight, offset = _weight(o, w, width)
        except _NoMatch:
            weight = None
        if weight is not None:
            w.nodes.add(n)
            out = _casts_after(n, w)
            n = _sole_user(out)
    if weight is not None and _is(n, _ADD) and len(n.args) == 2:
        o = n.args[1] if n.args[0] is out else n.args[0]
        try:
            sub = _Walk(gm)
            bias = sub.param(o, width)
            w.nodes |= sub.nodes | {n}
            out = _casts_after(n, w)
        except _NoMatch:
            bias = None
    shared = {n for n in w.nodes if n.op == "get_attr" and any(u not in w.nodes for u in n.users)}
    w.nodes -= shared  # a parameter read elsewhere too (a norm called twice) is not swallowed
    _sealed(w.nodes, out, x)
    _req(_shape(out) == _shape(x))
    return NormMatch(x, out, kind, eps, weight, bias, offset, frozenset(w.nodes - {out}))


def _weight(o: Any, w: _Walk, width: int) -> tuple[str, float]:
    """``(key, offset)`` of a weight read as ``w`` or ``c + w`` (casts allowed)."""
    o = w.uncast(o)
    if _is(o, _ADD) and len(o.args) == 2:
        a, b = o.args
        c = _number(a) if _number(a) is not None else _number(b)
        _req(c is not None)
        key = w.param(b if _number(a) is not None else a, width)
        w.nodes.add(o)
        return key, float(c)  # type: ignore[arg-type]
    return w.param(o, width), 0.0


def _casts_after(n: fx.Node, w: _Walk) -> fx.Node:
    w.nodes.add(n)
    while len(n.users) == 1 and _is(next(iter(n.users)), _CASTS):
        n = next(iter(n.users))
        w.nodes.add(n)
    return n


def _only_user(n: fx.Node) -> fx.Node:
    _req(len(n.users) == 1)
    return next(iter(n.users))


def _sole_user(n: fx.Node) -> fx.Node | None:
    return next(iter(n.users)) if len(n.users) == 1 else None


def _eps(add: fx.Node, src: fx.Node) -> float:
    _req(len(add.args) == 2 and not add.kwargs)
    other = add.args[1] if add.args[0] is src else add.args[0]
    c = _number(other)
    _req(c is not None and c >= 0)
    return float(c)  # type: ignore[arg-type]


def _sealed(nodes: set[fx.Node], out: fx.Node, x: fx.Node) -> None:
    """No node of the match but its output is read from outside it."""
    for n in nodes:
        if n is out or n is x:
            continue
        for u in n.users:
            _req(u in nodes or u is out)


def find_norms(gm: fx.GraphModule) -> tuple[dict[fx.Node, NormMatch], set[fx.Node]]:
    """Matches keyed by their output node, and every node they swallow."""
    matches: dict[fx.Node, NormMatch] = {}
    gone: set[fx.Node] = set()
    for n in gm.graph.nodes:
        if not (_is(n, _MEAN) or _is(n, _VAR)):
            continue
        try:
            m = _match(n, gm)
        except (_NoMatch, ValueError, TypeError, IndexError, AttributeError, KeyError):
            continue
        if m.out in matches or (m.nodes | {m.out}) & (gone | set(matches)):
            continue
        matches[m.out] = m
        gone |= m.nodes
    return matches, gone


def emit_norm(cv: Converter, m: NormMatch) -> str:
    """Add the node of ``m``: ``rmsnorm``/``layernorm`` (``*_offset`` for ``c + weight``) named
    after the module owning its weight; opaque (all fixed) when the units of its input do not
    lie on the normalised axis."""
    x = cv.name[m.x]
    shape = cv.meta_shape(m.out) or cv.shape[x]
    if cv.fa[x] != len(cv.shape[x]) - 1 and cv.g.node(x).op != "input":  # (inputs never move)
        return cv.emit(m.out, f"@{m.out.name}", "opaque", [x])
    keys = [k for k in (m.weight, m.bias) if k is not None]
    prefixes = {k.rpartition(".")[0] for k in keys}
    tails = [k.rpartition(".")[2] for k in keys]
    plain = m.offset == 0.0 and tails == ["weight", "bias"][: len(keys)] and len(prefixes) == 1
    op = m.kind if plain or not keys else f"{m.kind}_offset"
    attrs: dict[str, Any] = {"eps": m.eps, "affine": m.weight is not None,
                             "bias": m.bias is not None}  # fmt: skip
    if not keys:
        return cv.emit(m.out, f"@{m.out.name}", op, [x], len(shape) - 1, **attrs)
    owner = keys[0].rpartition(".")[0]  # named after the module owning the weight
    name = owner if owner and owner not in cv.g.nx else f"@{m.out.name}"
    if plain:
        params = [ParamSpec(k.rpartition(".")[2], (shape[-1],), ("out",)) for k in keys]
        attrs["key_prefix"] = owner
    else:
        params = [ParamSpec(k, (shape[-1],), ("out",)) for k in keys]
        attrs.update(absolute_keys=True, offset=m.offset, weight_key=m.weight, bias_key=m.bias)
    return cv.emit(m.out, name, op, [x], len(shape) - 1, params, **attrs)


register_pattern("norm", find_norms, emit_norm, yields=True)  # attention may take them (QK-norm)
