"""Writes into slices of a tensor the model computed, read as a ``torch.cat`` of its pieces.

Models overwrite part of a tensor they computed::

    attn[:, :, 1:, 1:] = attn[:, :, 1:, 1:] + rel_h + rel_w   # MViTv2 with a class token
    h[:, :2].add_(1.0)
    out[:, :, i] = torch.tanh(out[:, :, i - 1])                # a recurrence, step by step

After such a write the tensor ``b`` holds the written value in the region and its old values
elsewhere: along the first cut dimension it is the ``torch.cat`` of the slice of ``b`` before
the region, the region, and the slice after it; the region is cut the same way along the next
cut dimension, and the innermost piece is the written value, broadcast to the region, given
``b``'s dtype and given back the dimensions an integer index removed. :func:`scatter_export`
rewrites a torch.export graph so: every reader of ``b`` after the write reads that cat (a new
tensor), and a reader of the write's own result reads the same view of the cat.

Only where that is exact (fail closed; anything else is left as it is and stays refused by the
in-place rules of :mod:`symlab.frontend.export`):

* ``b`` is made by the graph (no input, parameter, buffer, or view of one), with values in
  every entry (not ``torch.empty``: a tensor written part by part into all of its entries is
  read by :mod:`symlab.frontend.assembled`, before this pass);
* the write reaches ``b`` through ``slice`` and ``select`` views with static bounds and no
  step, each dimension of ``b`` cut at most once;
* nothing reads ``b``'s memory after the write except through ``b`` itself or the write's
  result: views taken of ``b`` before the write are read before it, and none of them is
  written in place;
* the write is ``copy_``, ``fill_``, ``zero_``, or an elementwise in-place op whose
  out-of-place op computes the same values (``add_`` → ``add``, on the region read before the
  write).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx

from symlab.frontend.aliases import may_alias, may_view, writes_in_place
from symlab.frontend.assembled import _aten_cuts, _static

__all__ = ["scatter_export"]

_aten = torch.ops.aten
_VIEWS = {_aten.slice.Tensor, _aten.select.int}
#: in-place ops whose out-of-place op (same overload) computes the written values from the
#: region's old ones
_ELEMENTWISE = {
    "add_", "sub_", "mul_", "div_", "masked_fill_", "clamp_", "clamp_min_", "clamp_max_",
    "relu_", "neg_", "exp_", "tanh_", "sigmoid_", "abs_", "pow_", "addcmul_", "addcdiv_",
}  # fmt: skip

#: factories whose entries are whatever the memory held: a write leaving part of such a
#: tensor unwritten is refused (:mod:`symlab.frontend.assembled` names it), not read
_UNINITIALISED = {
    _aten.empty.memory_format, _aten.new_empty.default, _aten.empty_like.default,
    _aten.empty_strided.default, _aten.new_empty_strided.default,
}  # fmt: skip

Cut = tuple[int, int, int, bool]  # (dimension of b, start, stop, removed by an integer index)


def scatter_export(graph: fx.Graph) -> bool:
    """Rewrite, in ``graph`` (a torch.export graph), each write into a slice of a tensor the
    graph computed as the ``torch.cat`` of that tensor's pieces and the written value (module
    docstring); True when anything changed.

    >>> from torch import nn
    >>> class Shift(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         h = self.a(x)
    ...         h[:, 1:] = h[:, 1:] * 2
    ...         return self.b(h)
    >>> ep = torch.export.export(Shift(), (torch.randn(5, 3),), strict=False)
    >>> scatter_export(ep.graph)
    True
    >>> [n.target.__name__.split(".")[0] for n in ep.graph.nodes if n.op == "call_function"]
    ['linear', 'slice', 'mul', 'slice', 'cat', 'linear']
    """
    changed = False
    for write in list(graph.nodes):
        if write.graph is not None and _scatter(graph, write):
            changed = True
    return changed


def _scatter(graph: fx.Graph, write: fx.Node) -> bool:
    """Rewrite ``write`` when it is one (module docstring); True when it was."""
    if write.op != "call_function" or not writes_in_place(write):
        return False
    name = write.target.overloadpacket.__name__
    if name not in _ELEMENTWISE | {"copy_", "fill_", "zero_"} or not write.args:
        return False
    chain: list[fx.Node] = []  # the views, from the written one down to b
    node = write.args[0]
    while isinstance(node, fx.Node) and node.op == "call_function" and node.target in _VIEWS:
        chain.append(node)
        node = node.args[0]
    if not chain or not isinstance(node, fx.Node) or may_alias(node):
        return False
    if node.target in _UNINITIALISED:
        return False  # the rest of it holds no values
    base, region = node, write.args[0]
    cuts = _cuts(chain)
    b, r = base.meta.get("val"), region.meta.get("val")
    if cuts is None or not isinstance(b, torch.Tensor) or not isinstance(r, torch.Tensor):
        return False
    order = {n: i for i, n in enumerate(graph.nodes)}
    if not _seen_before(base, write, set(chain), order):
        return False
    with graph.inserting_before(write):
        value = _value(graph, write, name, region, r)
        if value is None:
            return False
        value = _fit(graph, write, value, r, b.dtype)
        for dim, _, _, squeezed in sorted(cuts):
            if squeezed:
                value = _emit(graph, write, _aten.unsqueeze.default, (value, dim))
        new = _pieces(graph, write, base, value, sorted(cuts))
    for user in list(base.users):
        if user in order and order[user] > order[write]:
            user.replace_input_with(base, new)
    if write.users:  # the write's result: the region, now of the new tensor
        with graph.inserting_after(new):
            view = new
            for v in reversed(chain):
                view = _emit(graph, write, v.target, (view, *v.args[1:]), dict(v.kwargs))
        write.replace_all_uses_with(view)
    graph.erase_node(write)
    for v in chain:  # from the written view down: each unread now
        if not v.users:
            graph.erase_node(v)
    return True


def _cuts(chain: list[fx.Node]) -> list[Cut] | None:
    """The region of ``chain`` (views from the written one down to the base) as cuts along the
    base's dimensions, or None (a step, a size computed in the graph, a dimension cut twice)."""
    dims: list[int] | None = None  # the base dimension of each dimension of the current view
    found: list[Cut] = []
    for v in reversed(chain):
        shape = _static(v.args[0].meta.get("val"))
        if shape is None:
            return None
        if dims is None:
            dims = list(range(len(shape)))
        cuts = _aten_cuts(v, shape)
        if cuts is None:
            return None
        for dim, start, stop, squeezed in cuts:
            at = dims[dim]
            if any(c[0] == at for c in found):
                return None
            found.append((at, start, stop, squeezed))
            if squeezed:
                del dims[dim]
    return found if found else None


def _seen_before(base: fx.Node, write: fx.Node, chain: set[fx.Node], order: dict) -> bool:
    """Whether nothing reads ``base``'s memory after ``write`` but ``base`` itself (which
    will read the cat): every view of it other than the write's own chain is read before the
    write, and nothing writes into one in place before it."""
    todo = [(u, base) for u in base.users]
    while todo:
        user, of = todo.pop()
        if user is write:
            continue  # the write reads its region, or reads another part as its value
        if user in chain:
            todo.extend((u, user) for u in user.users)
            continue
        if order[user] > order[write]:
            if of is base:
                continue  # a later reader of the tensor itself: it will read the cat
            return False  # a view taken before the write, read after it
        if may_view(user, of):
            if writes_in_place(user):
                return False  # another write into the tensor before this one
            todo.extend((u, user) for u in user.users)
    return True


def _value(graph: fx.Graph, write: fx.Node, name: str, region: fx.Node, r: torch.Tensor) -> Any:
    """The values ``write`` puts into ``region`` (a node), or None when not known."""
    if name == "copy_":
        src = write.args[1] if len(write.args) > 1 else None
        return src if isinstance(src, fx.Node) and "val" in src.meta else None
    if name == "zero_" or (name == "fill_" and not isinstance(write.args[1], fx.Node)):
        fill = 0 if name == "zero_" else write.args[1]
        kwargs = {"dtype": r.dtype, "device": r.device}
        return _emit(graph, write, _aten.full.default, (list(r.shape), fill), kwargs)
    if name == "fill_":  # fill_.Tensor: a 0-dim tensor
        return write.args[1] if "val" in write.args[1].meta else None
    packet = getattr(_aten, name[:-1], None)
    op = getattr(packet, write.target._overloadname, None) if packet is not None else None
    if op is None:
        return None
    return _emit(graph, write, op, (region, *write.args[1:]), dict(write.kwargs))


def _fit(graph: fx.Graph, write: fx.Node, value: fx.Node, r: torch.Tensor, dtype: Any) -> Any:
    """``value`` given ``dtype`` and broadcast to the region's shape (as the write does)."""
    v = value.meta["val"]
    if v.dtype != dtype:
        value = _emit(graph, write, _aten._to_copy.default, (value,), {"dtype": dtype})
    if tuple(v.shape) != tuple(r.shape):
        value = _emit(graph, write, _aten.expand.default, (value, list(r.shape)))
    return value


def _pieces(graph: fx.Graph, write: fx.Node, t: fx.Node, value: Any, cuts: list[Cut]) -> Any:
    """``t`` with the region ``cuts`` (sorted by dimension) holding ``value``: along the first
    cut, the cat of ``t`` before the region, the region (cut along the rest), ``t`` after."""
    dim, start, stop, _ = cuts[0]
    size = t.meta["val"].shape[dim]
    mid = value
    if len(cuts) > 1:
        inner = _emit(graph, write, _aten.slice.Tensor, (t, dim, start, stop))
        mid = _pieces(graph, write, inner, value, cuts[1:])
    parts = []
    if start > 0:
        parts.append(_emit(graph, write, _aten.slice.Tensor, (t, dim, 0, start)))
    parts.append(mid)
    if stop < size:
        parts.append(_emit(graph, write, _aten.slice.Tensor, (t, dim, stop, size)))
    return _emit(graph, write, _aten.cat.default, (parts, dim))


def _emit(graph: fx.Graph, write: fx.Node, op: Any, args: tuple, kwargs: Any = None) -> fx.Node:
    """A new aten node with ``write``'s metadata (module stack, source line) and its value
    computed from its arguments' (torch.export's fake tensors)."""
    kwargs = kwargs or {}
    node = graph.call_function(op, args, kwargs)
    node.meta.update({k: v for k, v in write.meta.items() if k != "val"})
    vals = fx.node.map_arg((args, kwargs), lambda n: n.meta["val"])
    node.meta["val"] = op(*vals[0], **vals[1])
    return node
