"""``x / ‖x‖`` written by hand (``x / x.norm(dim=-1, keepdim=True)``, with an optional floor
``clamp_min(eps)``, ``clamp(min=eps)`` or ``+ eps``) or decomposed by torch.export from
``F.normalize``: one ``normalize`` node (signed permutations pass through; see
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


def emit_normalize(cv: Converter, div: fx.Node) -> str:
    """The ``normalize`` node of a match (opaque when the divided tensor is a constant)."""
    x = cv.name.get(div.args[0])  # type: ignore[arg-type]
    if x is None:
        return cv.opaque(div)
    return cv.emit(div, f"@{div.name}", "normalize", [x])


register_pattern("normalize", find_normalize, emit_normalize)
