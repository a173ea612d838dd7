"""In-place writes in a torch.fx graph: every later reader of a written tensor reads the write.

torch.fx records ``F.relu(h, inplace=True)``, ``nn.ReLU(inplace=True)(h)`` and ``h.add_(y)`` as
nodes whose *result* is the written tensor, but a later node that reads ``h`` itself (the
call's result discarded, or ``h`` read again) still points at the node that made ``h``: read
as they stand, the graph would skip the write (and dead-code elimination would drop the
discarded call), so a later linear layer would see the unwritten ``h`` and symlab would derive
the group of another function. (``h += y`` is recorded as ``operator.iadd`` by symlab's tracer
for the same reason.) :func:`resolve_in_place` rewrites such readers to read the write's
result, which is exact where the write covers the whole tensor, and drops a write nothing
reads afterwards (it cannot change the outputs). A write through a view (``h[:, 0] = 0``,
``h[:, 1].zero_()``), or one whose tensor may share memory with another tensor read
afterwards, is not read here — unless no parameter reaches the written tensor or the written
value (token ids shifted in place): fixed data stays fixed. It raises
:class:`ReadThroughView`, on which the front-end reads the model through torch.export, which
reads writes into slices as a ``torch.cat`` of the pieces (:mod:`symlab.frontend.scattered`)
and refuses any other such write with a named error (fail closed).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import TensorMetadata

from symlab.frontend.fxutil import where
from symlab.frontend.units import _base, _metadata, reachable, writes

__all__ = ["ReadThroughView", "resolve_in_place"]


class ReadThroughView(RuntimeError):
    """An in-place write whose tensor is read afterwards through another name (a view, or a
    write into a slice): not a :class:`~symlab.errors.SymlabError`, so that the front-end reads
    the model through torch.export instead, which follows writes into slices
    (:mod:`symlab.frontend.scattered`) and refuses what it cannot follow by name."""


#: writes whose result is not the written tensor
_NO_RESULT = {operator.setitem, "__setitem__"}
#: tensor methods writing in place whose out-of-place method computes the same values, read
#: as that method once every later reader reads the write (``scores.masked_fill_(m, v)``)
_OUT_OF_PLACE = {f"{name}_": name for name in (
    "add", "sub", "mul", "div", "masked_fill", "relu", "tanh", "sigmoid", "abs", "exp",
)}  # fmt: skip


def resolve_in_place(graph: fx.Graph) -> None:
    """Make every node that reads a tensor after an in-place write of it read the write's
    result (module docstring); refuse writes other readers could see otherwise. Runs on a graph
    whose shapes are recorded (:func:`~symlab.frontend.shapes.record_shapes`).

    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         h = self.a(x)
    ...         torch.nn.functional.relu(h, inplace=True)  # the result discarded
    ...         return self.b(h)
    >>> from symlab.frontend.shapes import graph_module, record_shapes
    >>> net = Net()
    >>> gm = graph_module(net, fx.Tracer().trace(net))
    >>> _ = record_shapes(gm, (torch.randn(2, 3),))  # writes are found on tensors only
    >>> resolve_in_place(gm.graph)
    >>> [(n.name, [a.name for a in n.all_input_nodes]) for n in gm.graph.nodes
    ...  if n.op == "call_module"]
    [('a', ['x']), ('b', ['relu'])]
    """
    order = {n: i for i, n in enumerate(graph.nodes)}
    if not any(writes(n) for n in order):
        return
    base = {n: _base(n) for n in order}  # unchanged by the rewrites: a write's base is its src's
    # what a parameter may reach (any module call counts): a write into a tensor nothing
    # reaches, of a value nothing reaches (BART's shift_tokens_right on token ids), changes
    # fixed data only, which the converter reads as fixed whatever its values
    moved = reachable(order, lambda m: m.op in ("get_attr", "call_module"))
    for n in list(graph.nodes):
        if not writes(n) or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        src = n.args[0]
        if not isinstance(src.meta.get("tensor_meta"), TensorMetadata):
            continue  # ``n += 1`` on a size: ints do not alias
        later = [u for u in src.users if u is not n and order[u] > order[n]]
        whole = n.target not in _NO_RESULT
        if later and whole:
            for u in later:
                u.replace_input_with(src, n)
        seen = [  # tensors that may share src's memory (sizes read earlier share none)
            m for m in order
            if order[m] < order[n] and m is not src and base[m] is base[src] and _tensors(m)
        ]  # fmt: skip
        read = [u for m in seen for u in m.users if u is not n and order[u] > order[n]]
        if not read and not later and not n.users:  # nothing reads the write: drop it
            inputs = n.all_input_nodes
            graph.erase_node(n)
            _erase_unused(inputs)  # what computed only the written value (h += self.c(x))
            continue
        if (read or (later and not whole)) and (n in moved or base[src] in moved):
            readers = sorted({u.name for u in (read or later)})
            raise ReadThroughView(
                f"node {n.name!r}: an in-place write{where(n)} of a tensor that {readers} read "
                "afterwards through another name (a view, or a tensor it may share memory with); "
                "symlab reads an in-place op only where every later reader reads its result. "
                "Write it out of place (h = F.relu(h) instead of F.relu(h, inplace=True), "
                "h = h + y instead of h += y, torch.where or torch.cat instead of h[i] = v)"
            )
        if (
            n.op == "call_method"
            and n.target in _OUT_OF_PLACE
            and (n in moved or base[src] in moved)
        ):
            n.target = _OUT_OF_PLACE[n.target]  # every later reader reads n, no alias: exact


#: what a shape, dtype or device read gives
_NOT_TENSORS = (int, float, bool, torch.Size, torch.dtype, torch.device)


def _tensors(node: fx.Node) -> bool:
    """Whether ``node``'s value may hold a tensor: not a size, a dtype or a number read from
    one (``b, c, h, w = x.shape``), which the shape pass recorded as holding no tensor."""
    if _metadata(node):
        return False
    if "tensor_meta" not in node.meta:
        return node.meta.get("type") not in _NOT_TENSORS

    def has(meta: Any) -> bool:
        if isinstance(meta, TensorMetadata):
            return True
        if isinstance(meta, tuple | list):
            return any(has(m) for m in meta)
        if isinstance(meta, dict):
            return any(has(m) for m in meta.values())
        return False

    return has(node.meta["tensor_meta"])


def _erase_unused(nodes: list[fx.Node]) -> None:
    """Erase the nodes of ``nodes`` that nothing reads any more, and in turn their inputs that
    nothing else reads; never an input, an output, an impure call or another write."""
    todo = list(nodes)
    while todo:
        n = todo.pop()
        if n.users or n.graph is None or n.op in ("placeholder", "output") or writes(n):
            continue
        if n.is_impure():
            continue
        inputs = n.all_input_nodes
        n.graph.erase_node(n)
        todo.extend(inputs)
