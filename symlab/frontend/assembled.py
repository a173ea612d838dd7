"""Tensors assembled by writes into slices of a new tensor, read as one ``torch.cat``.

Models build a tensor from parts by allocating it and writing each part into a slice of it::

    key = k_nope.new_empty(*k_nope.shape[:-1], d_nope + d_rope)   # DeepSeek-V3, MiniCPM3
    key[..., :d_nope].copy_(k_nope)
    key[..., d_nope:].copy_(k_rot)          # k_rot: one head, broadcast over the heads

    out = x.new_zeros(n, k, d)              # a loop over the k columns
    for i in range(k):
        out[:, i] = f(x, i)

When the writes cover the new tensor exactly (disjoint pieces along one dimension, nothing
left unwritten) and nothing reads it before they end, its value is
``torch.cat([part_0, part_1, ...], dim)`` — each part broadcast to its slice (``expand``), given
the tensor's dtype, and given back the dimension an integer index removed (``unsqueeze``) — a
new tensor that shares memory with none of its parts, like the one it replaces.
:func:`assemble_export` rewrites a ``torch.export`` graph so (its writes are ``aten.copy_`` into
``aten.slice`` / ``aten.select`` views), :func:`assemble_fx` a torch.fx graph (``t[i].copy_(v)``;
symlab's tracer cannot record ``t[i] = v``, and such a model is read through torch.export).
Everything else is left as it is and stays refused by the in-place rules of both front-ends
(fail closed): a write that leaves part of the tensor as it was allocated, overlapping writes,
a slice with a step, a view read by anything but its write, a read of the tensor between the
writes, any other in-place op between the writes (a part written first might change before
the last) unless it writes a tensor made after every earlier write (an in-place ReLU on the
next part's own output), a part on another device.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import TensorMetadata

from symlab.frontend.scattered import emit_like, view_cut
from symlab.frontend.units import _base, makes_fresh, writes

__all__ = ["assemble_export", "assemble_fx", "written_in_parts"]

_aten = torch.ops.aten
Cut = tuple[int, int, int, bool]  # (dim, start, stop, squeezed by an integer index)


@dataclass(frozen=True)
class _Piece:
    """One write: ``src`` into ``[start, stop)`` along ``dim`` (``dim`` None: the whole
    tensor), ``squeezed`` when an integer index took the dimension away (``out[:, i] = v``);
    ``nodes``: its views, then its ``copy_``."""

    dim: int | None
    start: int
    stop: int
    squeezed: bool
    src: fx.Node
    nodes: tuple[fx.Node, ...]


@dataclass(frozen=True)
class _Dialect:
    """What the ops look like in one kind of graph, and how to emit the parts and the cat."""

    factory: Callable[[fx.Node], bool]
    view: Callable[[fx.Node], bool]
    cuts: Callable[[fx.Node, tuple[int, ...]], list[Cut] | None]  # on the view's input shape
    copy: Callable[[fx.Node], bool]
    meta: Callable[[fx.Node], Any]  # a tensor's (or TensorMetadata's) shape, dtype, device
    may_write: Callable[[fx.Node], bool]
    emit: Callable[[fx.Graph, str, tuple, _Piece], fx.Node]  # cast/expand/unsqueeze/cat/clone
    whole_alias: Callable[[fx.Node], bool]  # a view that is the whole tensor
    owner: Callable[[fx.Node], fx.Node | None]  # the node owning a tensor's memory, if known


def _static(meta: Any) -> tuple[int, ...] | None:
    shape = getattr(meta, "shape", None)
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return tuple(shape)


def _piece(first: fx.Node, base: fx.Node, d: _Dialect) -> _Piece | None:
    """The write that starts at ``first``, a user of ``base``: a chain of views, each read by
    the next alone, ending in a ``copy_`` into the last (whose result only a write into the
    whole tensor may have read later); at most one cut, along one dimension."""
    views: list[fx.Node] = []
    node, prev = first, base
    while d.view(node):
        if node.args[0] is not prev or len(node.users) != 1:
            return None
        views.append(node)
        prev, node = node, next(iter(node.users))
    if not d.copy(node) or node.args[0] is not prev or node.kwargs or len(node.args) != 2:
        return None
    if node.users and not all(d.whole_alias(v) for v in views):
        return None  # its result is a view of a part of ``base``, read later
    src = node.args[1]
    if not isinstance(src, fx.Node) or src is base:
        return None  # (``t.copy_(t)``: base is read by its own write)
    found: list[Cut] = []
    for v in views:
        shape = _static(d.meta(v.args[0]))
        cuts = d.cuts(v, shape) if shape is not None else None
        if cuts is None or (cuts and found and found[-1][3]):
            return None  # unread, or cut after an integer index renumbered the dimensions
        found += cuts
    if len(found) > 1:
        return None  # two cuts: not one piece along one dimension
    if not found:
        return _Piece(None, 0, 0, False, src, (*views, node))
    dim, start, stop, squeezed = found[0]
    return _Piece(dim, start, stop, squeezed, src, (*views, node))


def _pieces(base: fx.Node, order: dict[fx.Node, int], d: _Dialect) -> list[_Piece] | None:
    """The writes assembling ``base`` in order along their dimension, when they cover it
    exactly, every other reader of ``base`` comes after the last of them, and nothing in
    between writes in place."""
    shape = _static(d.meta(base))
    if shape is None:
        return None
    pieces, readers = [], []
    for user in base.users:
        p = _piece(user, base, d)
        if p is None:
            readers.append(user)
        else:
            pieces.append(p)
            readers.extend(p.nodes[-1].users)  # a write into the whole tensor: its result
    if not pieces or not readers or any(u.op == "output" for u in readers):
        return None
    first, last = (f(order[p.nodes[-1]] for p in pieces) for f in (min, max))
    if any(order[r] < last for r in readers):
        return None  # read between the writes
    ours = {n for p in pieces for n in p.nodes}
    copies = sorted(order[p.nodes[-1]] for p in pieces)
    for n in order:
        if first < order[n] < last and n not in ours and d.may_write(n):
            # a part written before might change now, and the cat reads it later: unless the
            # tensor written here owns memory made after every earlier write (a ReLU in place
            # on a Linear's output computed for the next part)
            owner = d.owner(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
            before = max(c for c in copies if c < order[n])
            if owner is None or order.get(owner, -1) <= before:
                return None
    if any(p.dim is None for p in pieces):
        return pieces if len(pieces) == 1 else None
    if len({p.dim for p in pieces}) != 1:
        return None
    dim = pieces[0].dim
    assert dim is not None
    pieces.sort(key=lambda p: (p.start, p.stop))
    at = 0
    for p in pieces:
        if p.start != at:
            return None  # a gap (left as allocated) or an overlap
        at = p.stop
    return pieces if at == shape[dim] else None


def _target(p: _Piece, base: Any, d: _Dialect) -> tuple[int, ...] | None:
    """The shape ``p``'s source broadcasts to (its slice, less an index dimension), or None
    when it does not, or lives on another device."""
    src = d.meta(p.src)
    shape = _static(src)
    if shape is None or getattr(src, "device", None) != getattr(base, "device", None):
        return None
    target = list(base.shape)
    if p.dim is not None:
        if p.squeezed:
            del target[p.dim]
        else:
            target[p.dim] = p.stop - p.start
    try:
        fits = torch.broadcast_shapes(shape, tuple(target)) == tuple(target)
    except RuntimeError:
        fits = False
    return tuple(target) if fits else None


def _assemble(graph: fx.Graph, d: _Dialect) -> bool:
    changed = False
    for base in [n for n in graph.nodes if d.factory(n)]:
        order = {n: i for i, n in enumerate(graph.nodes)}
        meta = d.meta(base)
        pieces = _pieces(base, order, d)
        targets = [_target(p, meta, d) for p in pieces or []]
        if pieces is None or any(t is None for t in targets):
            continue
        last = max((p.nodes[-1] for p in pieces), key=order.__getitem__)
        with graph.inserting_before(last.next):  # in order, right after the last write
            parts = []
            for p, target in zip(pieces, targets, strict=True):
                node = p.src
                if d.meta(p.src).dtype != meta.dtype:
                    node = d.emit(graph, "cast", (node, meta.dtype), p)
                if _static(d.meta(p.src)) != target:
                    node = d.emit(graph, "expand", (node, list(target or ())), p)
                if p.squeezed:
                    node = d.emit(graph, "unsqueeze", (node, p.dim), p)
                parts.append(node)
            if pieces[0].dim is None:  # one write of the whole tensor (0-dim ones too)
                cat = d.emit(graph, "clone", (parts[0],), pieces[0])
            else:
                cat = d.emit(graph, "cat", (parts, pieces[0].dim), pieces[0])
        for old in (base, *(p.nodes[-1] for p in pieces)):  # a whole write's result is base
            for user in list(old.users):
                if not any(user is n for p in pieces for n in p.nodes) and user is not cat:
                    user.replace_input_with(old, cat)
        for p in pieces:
            for n in reversed(p.nodes):
                graph.erase_node(n)
        graph.erase_node(base)
        changed = True
    return changed


# -- torch.export ------------------------------------------------------------------------------

#: ops making a new tensor whose entries the writes then replace (their values do not matter)
_ATEN_FACTORIES = {
    _aten.new_empty.default, _aten.new_zeros.default, _aten.new_ones.default,
    _aten.new_full.default, _aten.empty.memory_format, _aten.zeros.default, _aten.ones.default,
    _aten.full.default, _aten.empty_like.default, _aten.zeros_like.default,
    _aten.ones_like.default, _aten.full_like.default,
}  # fmt: skip
#: ``aten.alias``: a slice taking a whole dimension, e.g. ``t[..., 0:1]`` of width 1
_SLICE, _SELECT, _ALIAS = _aten.slice.Tensor, _aten.select.int, _aten.alias.default
_ATEN_EMIT = {
    "cast": lambda a: (_aten._to_copy.default, (a[0],), {"dtype": a[1]}),
    "expand": lambda a: (_aten.expand.default, a, {}),
    "unsqueeze": lambda a: (_aten.unsqueeze.default, a, {}),
    "cat": lambda a: (_aten.cat.default, a, {}),
    "clone": lambda a: (_aten.clone.default, a, {}),
}


def _aten_cuts(v: fx.Node, shape: tuple[int, ...]) -> list[Cut] | None:
    """The cut of an ``aten.slice`` / ``aten.select`` / ``aten.alias`` view
    (:func:`symlab.frontend.scattered.view_cut`), refused (None) with a step."""
    if v.target is _ALIAS:
        return []
    cut = view_cut(v, shape)
    if cut is None or any(step != 1 for _, _, _, step, _ in cut):
        return None
    return [(dim, start, stop, squeezed) for dim, start, stop, _, squeezed in cut]


def _index(dim: int, idx: Any, size: int) -> list[Cut] | None:
    if isinstance(idx, bool) or not isinstance(idx, int) or not -size <= idx < size:
        return None
    return [(dim, idx % size, idx % size + 1, True)]


def _span(dim: int, s: slice, size: int) -> list[Cut] | None:
    if s.step not in (None, 1) or not all(isinstance(v, int | None) for v in (s.start, s.stop)):
        return None
    if any(isinstance(v, bool) for v in (s.start, s.stop)):
        return None
    lo, hi = slice(s.start, s.stop).indices(size)[:2]
    return [] if (lo, hi) == (0, size) else [(dim, lo, max(lo, hi), False)]


def _aten_may_write(node: fx.Node) -> bool:
    """Whether ``node`` may write into a tensor: :func:`~symlab.frontend.units.writes` (an aten
    op whose schema marks a written argument), or a call without a schema other than
    ``getitem`` (a higher-order op, which may write inside its sub-graph)."""
    if writes(node):
        return True
    no_schema = getattr(node.target, "_schema", None) is None
    return node.op == "call_function" and no_schema and node.target is not operator.getitem


def _aten_emit(graph: fx.Graph, what: str, args: tuple, p: _Piece) -> fx.Node:
    """A new aten node with the metadata of ``p``'s write (module stack, source line) and its
    value computed from its arguments' (torch.export's fake tensors)."""
    op, args, kwargs = _ATEN_EMIT[what](args)
    return emit_like(graph, p.nodes[-1], op, args, kwargs)


def _aten_owner(node: fx.Node) -> fx.Node | None:
    """The node whose fresh tensor ``node``'s memory is: up through views and in-place ops
    (per their schemas) to an op making a new tensor; None when not known (an input, a
    parameter, an op that may return its argument)."""
    while node.op == "call_function":
        schema = getattr(node.target, "_schema", None)
        if schema is None or not schema.returns or not node.args:
            return None
        alias = schema.returns[0].alias_info
        if alias is None:
            return node if makes_fresh(schema) else None
        if not isinstance(node.args[0], fx.Node):
            return None
        node = node.args[0]  # a view of its first argument, or that argument written
    return None


_EXPORT = _Dialect(
    factory=lambda n: n.op == "call_function" and n.target in _ATEN_FACTORIES,
    view=lambda n: n.op == "call_function" and n.target in (_SLICE, _SELECT, _ALIAS),
    cuts=_aten_cuts,
    copy=lambda n: n.op == "call_function" and n.target is _aten.copy_.default,
    meta=lambda n: n.meta.get("val"),
    may_write=_aten_may_write,
    emit=_aten_emit,
    whole_alias=lambda n: n.target is _ALIAS,
    owner=_aten_owner,
)


def written_in_parts(node: fx.Node) -> bool:
    """Whether ``node`` (of a torch.export graph) makes a new tensor that is then written into
    through a slice or an index (``t[i] = v``, ``t[:, a:b].copy_(v)``): for error messages,
    where :func:`assemble_export` did not read it as a cat.

    >>> from torch import nn
    >>> class Gap(nn.Module):
    ...     def forward(self, x):
    ...         out = x.new_zeros(len(x), 6)
    ...         out[:, :4] = x
    ...         return out
    >>> ep = torch.export.export(Gap(), (torch.randn(5, 4),), strict=False)
    >>> [n.name for n in ep.graph.nodes if written_in_parts(n)]
    ['new_zeros']
    """
    if not _EXPORT.factory(node):
        return False
    todo = list(node.users)
    while todo:
        user = todo.pop()
        if _EXPORT.copy(user) and user.args and user.args[0] is not node:
            return True
        if _EXPORT.view(user):
            todo.extend(user.users)
    return False


def assemble_export(graph: fx.Graph) -> bool:
    """Rewrite, in ``graph`` (a torch.export graph), each new tensor assembled by writes into
    its slices as the ``aten.cat`` of the parts (module docstring); True when anything changed.

    >>> from torch import nn
    >>> class Parts(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         out = x.new_empty(len(x), 6)
    ...         out[:, :4] = self.a(x)
    ...         out[:, 4:] = self.b(x)
    ...         return out * 2
    >>> ep = torch.export.export(Parts(), (torch.randn(5, 3),), strict=False)
    >>> assemble_export(ep.graph)
    True
    >>> [n.target.__name__ for n in ep.graph.nodes if n.op == "call_function"]
    ['linear.default', 'linear.default', 'cat.default', 'mul.Tensor']
    """
    return _assemble(graph, _EXPORT)


# -- torch.fx ----------------------------------------------------------------------------------

_FX_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.empty_like,
                 torch.zeros_like, torch.ones_like, torch.full_like}  # fmt: skip
_FX_NEW = {"new_empty", "new_zeros", "new_ones", "new_full"}


def _fx_factory(n: fx.Node) -> bool:
    if "out" in n.kwargs:
        return False
    if n.op == "call_function":
        return n.target in _FX_FACTORIES
    return n.op == "call_method" and n.target in _FX_NEW


def _fx_cuts(v: fx.Node, shape: tuple[int, ...]) -> list[Cut] | None:
    """The cuts of ``t[index]``: integers, slices and one ``...``; refused (None) for sizes
    computed in the graph, ``None`` (a new axis), tensors and booleans."""
    idx = v.args[1]
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if sum(i is Ellipsis for i in items) > 1:
        return None
    real = [i for i in items if i is not Ellipsis]
    if len(real) > len(shape):
        return None
    fill = [slice(None)] * (len(shape) - len(real))
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items = items[:at] + fill + items[at + 1 :]
    else:
        items = items + fill
    found: list[Cut] = []
    for dim, item in enumerate(items):
        cut = (
            _span(dim, item, shape[dim])
            if isinstance(item, slice)
            else _index(dim, item, shape[dim])
        )
        if cut is None:
            return None
        found += cut
    return found


def _fx_emit(graph: fx.Graph, what: str, args: tuple, p: _Piece) -> fx.Node:
    """A new torch-level node (its shape is recorded by the caller's next shape pass)."""
    if what == "cat":
        node = graph.call_function(torch.cat, args)
    elif what == "cast":
        node = graph.call_method("to", args)
    else:
        node = graph.call_method(what, (args[0], tuple(args[1])) if what == "expand" else args)
    node.meta["stack_trace"] = p.nodes[-1].meta.get("stack_trace")
    return node


def _fx_owner(node: fx.Node) -> fx.Node | None:
    """The node owning ``node``'s memory (:func:`symlab.frontend.units._base`): an op or module
    known to make a new tensor, or None."""
    base = _base(node)
    return base if base.op in ("call_function", "call_method", "call_module") else None


_FX = _Dialect(
    factory=_fx_factory,
    view=lambda n: (
        n.op == "call_function"
        and n.target is operator.getitem
        and isinstance(n.meta.get("tensor_meta"), TensorMetadata)
    ),
    cuts=_fx_cuts,
    copy=lambda n: n.op == "call_method" and n.target == "copy_",
    meta=lambda n: n.meta.get("tensor_meta"),
    may_write=writes,
    emit=_fx_emit,
    whole_alias=lambda n: False,
    owner=_fx_owner,
)


def assemble_fx(graph: fx.Graph) -> bool:
    """Rewrite, in ``graph`` (a torch.fx graph whose shapes are recorded), each new tensor
    assembled by ``t[index].copy_(part)`` writes as the ``torch.cat`` of the parts (module
    docstring); True when anything changed (record the shapes again).

    >>> from torch import nn
    >>> from symlab.frontend.shapes import graph_module, record_shapes
    >>> class Parts(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         out = x.new_empty(x.shape[0], 6)
    ...         out[:, :4].copy_(self.a(x))
    ...         out[:, 4:].copy_(self.b(x))
    ...         return out * 2
    >>> net = Parts()
    >>> gm = graph_module(net, fx.Tracer().trace(net))
    >>> _ = record_shapes(gm, (torch.randn(5, 3),))
    >>> assemble_fx(gm.graph)
    True
    >>> [n.name for n in gm.graph.nodes]
    ['x', 'getattr_1', 'getitem', 'a', 'b', 'cat', 'mul', 'output']
    """
    return _assemble(graph, _FX)
