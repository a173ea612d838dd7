"""Composite torch functions written as the ops they compute, before shapes are recorded.

``torch.addcmul(x, a, b, value=v)`` is ``x + v * (a * b)`` and ``torch.addcdiv(x, a, b,
value=v)`` is ``x + v * (a / b)`` (their documented definitions; timm's ConvNeXt-V2 global
response norm writes its affine as ``torch.addcmul(bias, weight, x * n)``). Each call (function
or method, out of place) becomes those nodes of the graph, so that every rule that reads
products, quotients and sums reads them — and refuses or fixes what it would refuse or fix
written out by hand. The rounding of the fused kernel is not the point: symmetries are derived
from the structure and checked on the real model.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx

__all__ = ["decompose"]

_COMBINE = {torch.addcmul: operator.mul, "addcmul": operator.mul,
            torch.addcdiv: operator.truediv, "addcdiv": operator.truediv}  # fmt: skip


def _operands(node: fx.Node) -> tuple[Any, Any, Any, Any] | None:
    """``(x, a, b, value)`` of an out-of-place ``addcmul``/``addcdiv`` call, else None."""
    if node.op not in ("call_function", "call_method") or node.target not in _COMBINE:
        return None
    if set(node.kwargs) - {"value"} or len(node.args) != 3:
        return None  # (out=, or the old positional value)
    x, a, b = node.args
    return x, a, b, node.kwargs.get("value", 1)


def decompose(graph: fx.Graph) -> bool:
    """Rewrite every ``addcmul``/``addcdiv`` of ``graph`` in place; whether any was.

    >>> g = fx.symbolic_trace(lambda x, w, b: torch.addcmul(b, w, x, value=0.5)).graph
    >>> decompose(g)
    True
    >>> [n.target.__name__ for n in g.nodes if n.op == "call_function"]
    ['mul', 'mul', 'add']
    """
    changed = False
    for node in list(graph.nodes):
        got = _operands(node)
        if got is None:
            continue
        x, a, b, value = got
        with graph.inserting_before(node):
            term = graph.call_function(_COMBINE[node.target], (a, b))
            if value != 1:
                term = graph.call_function(operator.mul, (term, value))
            out = graph.call_function(operator.add, (x, term))
        out.meta.update({k: v for k, v in node.meta.items() if k == "stack_trace"})
        node.replace_all_uses_with(out)
        graph.erase_node(node)
        changed = True
    return changed
