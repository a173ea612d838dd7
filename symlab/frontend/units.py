"""Which tensors of a traced graph can carry units: a forward reachability pass from parameters.

A symmetry moves parameters, so it can move a tensor only if some parameter reaches it. A
tensor computed from the network's inputs and constants alone — token ids, attention masks,
position indices, ``cumsum``/``argmax``/``new_zeros`` of them, comparisons, ``|`` of masks —
is the same whatever element of the group acts: it is fixed data, an input like the network's
own, and no op rule is needed for the op that made it. The converter
(:mod:`symlab.frontend.convert`) reads such tensors as fixed ``input`` nodes and the torch.export
reader (:mod:`symlab.frontend.export`) keeps their aten ops as they are; rules apply only to the
ops a parameter reaches, so an op without a rule on parameter-reached data is still refused.

The sources are the floating parameters and buffers of the ``state_dict`` (the tensors the
action moves; integer buffers such as position ids are fixed data) wherever the graph reads
them: ``get_attr`` nodes and the calls of leaf modules that hold any parameter or buffer
(torch.fx), parameter and buffer inputs (torch.export). Every node
reading a source, directly or through other nodes, carries units. An in-place write of such a
tensor into another one (``mask.masked_fill_(m, h)``, ``x[i] = h``) makes the written tensor a
source, and with it the tensor it is a view of (its *base*), so that every reader of that
memory carries units too. Sound because torch.fx and torch.export make every read of a
module's tensors such a node.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.fx as fx
from torch import nn

from symlab.frontend.fxutil import flat_nodes

__all__ = ["reachable", "unit_carrying", "writes"]

_IN_PLACE_FUNCS = {
    operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    operator.ifloordiv, operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor,
    operator.ilshift, operator.irshift, operator.imatmul,
}  # fmt: skip
_FRESH_METHODS = {"clone", "float", "double", "half", "long", "int", "bool", "new_zeros",
                  "new_ones", "new_full", "new_empty", "new_tensor", "detach_copy"}  # fmt: skip


def writes(node: fx.Node) -> bool:
    """Whether ``node`` writes into its first argument (``x.add_(y)``, ``x += y``, ``x[i] = y``,
    an aten op whose schema marks a write).

    >>> g = fx.symbolic_trace(lambda x: x.relu_() + 1).graph
    >>> [writes(n) for n in g.nodes]
    [False, True, False, False]
    """
    if node.op == "call_module":  # nn.ReLU(inplace=True)
        owner = node.graph.owning_module
        try:
            module = owner.get_submodule(str(node.target)) if owner is not None else None
        except AttributeError:
            module = None
        return getattr(module, "inplace", False) is True
    if _inplace_argument(node):  # F.relu(x, inplace=True)
        return True
    if node.op == "call_method":
        name = str(node.target)
        return (name.endswith("_") and not name.startswith("_")) or name == "__setitem__"
    if node.op != "call_function":
        return False
    if node.target in _IN_PLACE_FUNCS:
        return True
    if getattr(node.target, "__module__", None) in ("_operator", "operator"):
        return False  # operator.or_, and_, not_: Python's operators, never in place
    schema = getattr(node.target, "_schema", None)
    if schema is not None:
        return any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
    name = getattr(node.target, "__name__", "")
    return name.endswith("_") and not name.startswith("_")


def _inplace_argument(node: fx.Node) -> bool:
    """Whether a call passes ``inplace=True`` (by keyword, or by position to a Python function
    with an ``inplace`` parameter, as ``F.relu(x, True)``)."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op != "call_function" or not any(a is True for a in node.args):
        return False
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bound.arguments.get("inplace") is True


def _base(node: fx.Node) -> fx.Node:
    """The tensor whose memory ``node`` may share: up through views (and ops not known to make
    a fresh tensor) to a node that owns its memory."""
    while node.op in ("call_function", "call_method") and node.args:
        src = node.args[0]
        if not isinstance(src, fx.Node):
            return node
        schema = getattr(node.target, "_schema", None)
        if schema is not None and schema.returns and schema.returns[0].alias_info is None:
            return node  # an aten op returning a fresh tensor
        if node.op == "call_method" and node.target in _FRESH_METHODS:
            return node
        node = src
    return node


def reachable(nodes: Iterable[fx.Node], is_source: Callable[[fx.Node], bool]) -> set[fx.Node]:
    """The nodes that a source reaches (in graph order ``nodes``), in-place writes of reached
    tensors making their bases sources too (module docstring).

    >>> g = fx.symbolic_trace(lambda x, y: (x + 1, y * 2)).graph
    >>> sorted(n.name for n in reachable(g.nodes, lambda n: n.name == "x"))
    ['add', 'output', 'x']
    """
    order = list(nodes)
    sources = {n for n in order if is_source(n)}
    while True:
        reached: set[fx.Node] = set()
        for n in order:
            if n in sources or any(a in reached for a in flat_nodes((n.args, n.kwargs))):
                reached.add(n)
        tainted = {
            _base(n.args[0]) for n in order
            if n in reached and writes(n) and n.args and isinstance(n.args[0], fx.Node)
            and n.args[0] not in reached
        }  # fmt: skip
        if tainted <= sources:
            return reached
        sources |= tainted


def _holds_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def unit_carrying(gm: fx.GraphModule, state: Mapping[str, torch.Tensor]) -> set[fx.Node]:
    """The nodes of the torch.fx graph ``gm`` that some parameter or buffer of ``state`` (the
    model's ``state_dict``) reaches.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb = nn.Embedding(10, 4)
    ...     def forward(self, ids):
    ...         pos = torch.cumsum(ids != 0, dim=1)  # from the input alone: fixed
    ...         return self.emb(ids) * pos.unsqueeze(-1)
    >>> net = Net()
    >>> gm = fx.symbolic_trace(net)
    >>> sorted(n.name for n in unit_carrying(gm, net.state_dict()))
    ['emb', 'mul', 'output']
    """

    def source(node: fx.Node) -> bool:
        if node.op == "get_attr":  # integer buffers (position ids) never carry units
            t = state.get(str(node.target))
            return t is not None and (t.is_floating_point() or t.is_complex())
        if node.op == "call_module":
            return _holds_state(gm.get_submodule(str(node.target)))
        return False

    return reachable(gm.graph.nodes, source)
