"""``x / ‖x‖`` written by hand (``x / x.norm(dim=-1, keepdim=True)``, with an optional floor
``clamp_min(eps)``, ``clamp(min=eps)`` or ``+ eps``) or decomposed by torch.export from
``F.normalize``, or ``x · rsqrt(Σ x² + eps)`` (the ``l2norm`` of Qwen3.5's and the FLA
library's linear attention: ``x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)``): one
``normalize`` node (signed permutations pass through, as they keep every sum of squares; see
:mod:`symlab.symmetry.reduce_rules`). The norm and its floor must be read by nothing else.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx

from symlab.frontend.patterns.registry import register_pattern
from symlab.frontend.readers import arg

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["emit_normalize", "find_normalize"]

_DIV = {operator.truediv, torch.div, "div"}
_NORMS = {torch.norm, "norm", torch.linalg.vector_norm, torch.linalg.norm}
_EXPAND = {"expand_as"}
_CLAMP = {torch.clamp_min, "clamp_min", torch.clamp, "clamp"}
_ADD = {operator.add, torch.add, "add"}
_MUL = {operator.mul, torch.mul, "mul"}
_RSQRT = {torch.rsqrt, "rsqrt"}
_SUM = {torch.sum, "sum"}
_POW = {torch.pow, "pow", operator.pow}


def _call(n: Any, targets: set[Any]) -> bool:
    return isinstance(n, fx.Node) and n.op in ("call_function", "call_method") and \
        n.target in targets  # fmt: skip


def _floor(n: fx.Node) -> bool:
    """``clamp_min(·, eps)``, ``clamp(·, min=eps)`` or ``· + eps`` with a constant ``eps``."""
    if _call(n, _CLAMP):
        lo, hi = arg(n, 1, "min"), arg(n, 2, "max")
        return isinstance(lo, int | float) and (
            hi is None or n.target not in ("clamp", torch.clamp)
        )
    if _call(n, _ADD):
        return len(n.args) == 2 and isinstance(n.args[1], int | float) and not n.kwargs
    return False


def find_normalize(gm: fx.GraphModule) -> tuple[dict[fx.Node, fx.Node], set[fx.Node]]:
    """Matches keyed by their division (each match is the division itself), and the nodes they
    swallow (the norm, its floor and its broadcast)."""
    found: dict[fx.Node, fx.Node] = {}
    gone: set[fx.Node] = set()
    for mul in gm.graph.nodes:
        chain = _inverse_norm(mul)
        if chain is not None:
            found[mul] = mul
            gone |= set(chain)
    for div in gm.graph.nodes:
        if not _call(div, _DIV) or len(div.args) != 2 or div.kwargs:
            continue
        x, d = div.args
        if not isinstance(x, fx.Node) or not isinstance(d, fx.Node):
            continue
        chain = []
        if _call(d, _EXPAND) and d.args[1:] == (x,):
            chain.append(d)
            d = d.args[0]
        if isinstance(d, fx.Node) and _floor(d):
            chain.append(d)
            d = d.args[0]
        if not _call(d, _NORMS) or d.args[0] is not x or arg(d, 3, "keepdim") is not True:
            continue
        chain.append(d)
        if any(len(n.users) != 1 for n in chain):
            continue
        found[div] = div
        gone |= set(chain)
    return found, gone


def _inverse_norm(mul: fx.Node) -> list[fx.Node] | None:
    """The nodes of ``x * rsqrt(sum(x * x, dim, keepdim=True) + eps)`` (either factor first;
    ``x ** 2``, ``x.pow(2)`` or ``torch.square(x)`` for the square) that ``mul`` ends, each
    read by the next alone; None when ``mul`` is not one."""
    if not _call(mul, _MUL) or len(mul.args) != 2 or mul.kwargs:
        return None
    for x, r in (mul.args, mul.args[::-1]):
        if not isinstance(x, fx.Node) or not _call(r, _RSQRT) or len(r.args) != 1:
            continue
        add = r.args[0]
        if not (_call(add, _ADD) and _floor(add)) or not isinstance(add.args[0], fx.Node):
            continue
        total = add.args[0]
        if not _call(total, _SUM) or arg(total, 2, "keepdim") is not True:
            continue
        sq = total.args[0]
        if not isinstance(sq, fx.Node) or not _square_of(sq, x):
            continue
        chain = [r, add, total, sq]
        if all(len(n.users) == 1 for n in chain):
            return chain
    return None


def _square_of(sq: fx.Node, x: fx.Node) -> bool:
    """Whether ``sq`` is ``x * x``, ``x ** 2``, ``x.pow(2)`` or ``torch.square(x)``."""
    if _call(sq, _MUL):
        return len(sq.args) == 2 and sq.args[0] is x and sq.args[1] is x and not sq.kwargs
    if _call(sq, _POW):
        return len(sq.args) == 2 and sq.args[0] is x and sq.args[1] == 2 and not sq.kwargs
    return _call(sq, {torch.square, "square"}) and sq.args[:1] == (x,)


def emit_normalize(cv: Converter, div: fx.Node) -> str:
    """The ``normalize`` node of a match (opaque when the divided tensor is a constant)."""
    a, b = div.args[:2]
    src = b if _call(a, _RSQRT) else a  # x * rsqrt(...) or rsqrt(...) * x: the tensor itself
    x = cv.name.get(src)  # type: ignore[arg-type]
    if x is None:
        return cv.opaque(div)
    return cv.emit(div, f"@{div.name}", "normalize", [x])


register_pattern("normalize", find_normalize, emit_normalize)
