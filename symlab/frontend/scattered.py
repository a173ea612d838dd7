"""Writes into slices of a tensor the model computed, read as a ``torch.cat`` of its pieces.

Models overwrite part of a tensor they computed::

    attn[:, :, 1:, 1:] = attn[:, :, 1:, 1:] + rel_h + rel_w   # MViTv2 with a class token
    h[:, :2].add_(1.0)
    out[:, :, i] = torch.tanh(out[:, :, i - 1])                # a recurrence, step by step

After such a write the tensor ``b`` holds the written value in the region and its old values
elsewhere: along the first cut dimension it is the ``torch.cat`` of the slice of ``b`` before
the region, the region, and the slice after it; the region is cut the same way along the next
cut dimension, and the innermost piece is the written value, broadcast to the region, given
``b``'s dtype and given back the dimensions an integer index removed. A region filled with
one number ``c`` (``t[:, 0] = 0``, ``zero_``) is written ``region · 0 + c``: the same values
wherever the region holds numbers (not ``inf`` or ``nan``), read as the region's units, so
that the constant piece does not fix the units it is concatenated with (read as fixed data,
a constant would). :func:`scatter_export` rewrites a torch.export graph so: every reader of
``b`` after the write reads that cat (a new tensor), and a reader of the write's own result
reads the same view of the cat. A ``copy_`` over the whole of such a tensor (MViTv2 without a
class token: ``attn[:, :, 0:, 0:] = attn[:, :, 0:, 0:] + rel``, which export records as a
copy into ``attn`` itself) is its value, read the same way.

Only where that is exact (fail closed; anything else is left as it is and stays refused by the
in-place rules of :mod:`symlab.frontend.export`):

* ``b`` is made by the graph (no input, parameter, buffer, or view of one), with values in
  every entry (not ``torch.empty``: a tensor written part by part into all of its entries is
  read by :mod:`symlab.frontend.assembled`, before this pass);
* the write reaches ``b`` through ``slice``, ``select`` and ``alias`` views with static
  bounds, each dimension of ``b`` cut at most once, the cut dimensions of known size (the
  others may be symbolic: rows picked by a mask); a cut with a step is written as
  ``slice_scatter``, which the converter reads on fixed data only (Qwen3.5's interleaved
  rotary frequencies, ``freqs_t[..., 1:k:3] = freqs[1, ..., 1:k:3]``) and refuses on a
  tensor with units;
* nothing reads ``b``'s memory after the write except through ``b`` itself or the write's
  result: views taken of ``b`` before the write are read before it, and none of them is
  written in place. (``b`` may also be a view of a tensor the graph made, when nothing reads
  that tensor, or the views between, after the write: ``freqs_t = freqs[0]``, then
  ``freqs_t[..., 1:k:3] = ...``, then ``freqs_t`` returned);
* the write is ``copy_``, ``fill_``, ``zero_``, or an elementwise in-place op whose
  out-of-place op computes the same values (``add_`` → ``add``, on the region read before the
  write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.fx as fx

from symlab.frontend.aliases import may_alias, read_only_before, writes_in_place

__all__ = ["emit_like", "scatter_export", "view_cut"]

_aten = torch.ops.aten
_VIEWS = {_aten.slice.Tensor, _aten.select.int, _aten.alias.default}
#: in-place ops whose out-of-place op (same overload) computes the written values from the
#: region's old ones
_ELEMENTWISE = {
    "add_", "sub_", "mul_", "div_", "masked_fill_", "clamp_", "clamp_min_", "clamp_max_",
    "relu_", "neg_", "exp_", "tanh_", "sigmoid_", "abs_", "addcmul_", "addcdiv_",
}  # fmt: skip

#: factories whose entries are whatever the memory held: a write leaving part of such a
#: tensor unwritten is refused (:mod:`symlab.frontend.assembled` names it), not read
_UNINITIALISED = {
    _aten.empty.memory_format, _aten.new_empty.default, _aten.empty_like.default,
    _aten.empty_strided.default, _aten.new_empty_strided.default,
}  # fmt: skip

#: (dimension of b, start, stop, step, removed by an integer index)
Cut = tuple[int, int, int, int, bool]


def scatter_export(graph: fx.Graph, constants: Mapping[str, Any] | None = None) -> bool:
    """Rewrite, in ``graph`` (a torch.export graph), each write into a slice of a tensor the
    graph computed as the ``torch.cat`` of that tensor's pieces and the written value (module
    docstring); True when anything changed. ``constants``: the values of the graph's lifted
    constant tensors by placeholder name (a fill with one of them, ``t[:, 0] = 0.0``, is then
    a fill with its number).

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
        if write.graph is not None and _scatter(graph, write, constants or {}):
            changed = True
    return changed


def _scatter(graph: fx.Graph, write: fx.Node, constants: Mapping[str, Any]) -> bool:
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
    if (not chain and name != "copy_") or not isinstance(node, fx.Node) or may_alias(node):
        return False  # (an in-place op over a whole tensor is read by export.py's rewriter)
    if node.target in _UNINITIALISED:
        return False  # the rest of it holds no values
    order = {n: i for i, n in enumerate(graph.nodes)}
    found = _base(write, [*chain, node], order)
    if found is None:
        return False
    base, chain, cuts = found
    region = write.args[0]
    b, r = base.meta.get("val"), region.meta.get("val")
    if not isinstance(b, torch.Tensor) or not isinstance(r, torch.Tensor):
        return False
    fill = _fill(write, name, constants)
    if not _fits(write, name, r, fill) or not _same_device(write, name, r):
        return False
    with graph.inserting_before(write):
        value = _value(graph, write, name, region, fill)
        if value is None:
            return False
        value = _fit(graph, write, value, r, b.dtype)
        for dim, _, _, _, squeezed in sorted(cuts):
            if squeezed:
                value = emit_like(graph, write, _aten.unsqueeze.default, (value, dim))
        new = _pieces(graph, write, base, value, sorted(cuts)) if cuts else value
    for user in list(base.users):
        if user in order and order[user] > order[write]:
            user.replace_input_with(base, new)
    if write.users:  # the write's result: the region, now of the new tensor
        with graph.inserting_after(new):
            view = new
            for v in reversed(chain):
                view = emit_like(graph, write, v.target, (view, *v.args[1:]), dict(v.kwargs))
        write.replace_all_uses_with(view)
    graph.erase_node(write)
    for v in chain:  # from the written view down: each unread now
        if not v.users:
            graph.erase_node(v)
    return True


def _base(
    write: fx.Node, path: list[fx.Node], order: dict[fx.Node, int]
) -> tuple[fx.Node, list[fx.Node], list[Cut]] | None:
    """The tensor to read the write into, the views from the region down to it, and the
    region's cuts in it; None when there is none. ``path`` runs from the written view down
    to a tensor the graph made. That tensor itself where every later reader reads it (not a
    view of it); else the lowest view of it that every later reader reads (Qwen3.5's
    ``freqs_t = freqs[0]``, written into, then returned), when nothing reads the tensor or
    the views in between after the write."""
    up = {p: path[i - 1] for i, p in enumerate(path) if i > 0}  # the next view up
    for k in range(len(path) - 1, 0 if len(path) > 1 else -1, -1):  # (a whole copy_: k = 0)
        cand, above, below = path[k], path[:k], path[k + 1 :]
        cuts = _cuts(above)
        if cuts is None or not _seen_before(cand, write, set(above), order):
            continue
        if all(
            read_only_before(u, p, write, order, by_write=True) or _apart(u, up[p])
            for p in below
            for u in p.users
            if u is not up[p]
        ):
            return cand, above, cuts
    return None


def _apart(u: fx.Node, v: fx.Node) -> bool:
    """Whether ``u`` and ``v``, views of the same tensor, share no entry: integer indices or
    slices without a step along one dimension that do not overlap (``freqs[2]`` and
    ``freqs[0]``)."""
    if u.op != "call_function" or u.target not in _VIEWS - {_aten.alias.default}:
        return False
    if u.args[0] is not v.args[0]:
        return False
    val = u.args[0].meta.get("val")
    if not isinstance(val, torch.Tensor):
        return False
    a, b = view_cut(u, tuple(val.shape)), view_cut(v, tuple(val.shape))
    if not a or not b:
        return False  # unknown, or all of the dimension
    (da, la, ha, sa, _), (db, lb, hb, sb, _) = a[0], b[0]
    return da == db and sa == sb == 1 and (ha <= lb or hb <= la)


def _cuts(chain: list[fx.Node]) -> list[Cut] | None:
    """The region of ``chain`` (views from the written one down to the base) as cuts along the
    base's dimensions, or None (a size computed in the graph, a dimension cut twice)."""
    dims: list[int] | None = None  # the base dimension of each dimension of the current view
    found: list[Cut] = []
    for v in reversed(chain):
        val = v.args[0].meta.get("val")
        if not isinstance(val, torch.Tensor):
            return None
        if dims is None:
            dims = list(range(val.dim()))
        if v.target is _aten.alias.default:
            continue
        cut = view_cut(v, tuple(val.shape))
        if cut is None:
            return None
        if not cut:
            continue
        dim, start, stop, step, squeezed = cut[0]
        at = dims[dim]
        if any(c[0] == at for c in found):
            return None
        found.append((at, start, stop, step, squeezed))
        if squeezed:
            del dims[dim]
    return found


def view_cut(v: fx.Node, shape: tuple) -> list[Cut] | None:
    """The cut ``v`` (a ``slice`` or ``select``) makes along its input's dimension, ``[]``
    when it takes all of it, None when its bounds or the dimension's size are not known."""
    names = ("dim", "index") if v.target is _aten.select.int else ("dim", "start", "end", "step")
    given = dict(zip(names, v.args[1:], strict=False)) | dict(v.kwargs)
    dim = given.get("dim", 0)
    if not isinstance(dim, int) or isinstance(dim, bool) or not -len(shape) <= dim < len(shape):
        return None
    dim %= len(shape)
    size = shape[dim]
    if not isinstance(size, int):
        return None  # a symbolic size
    ints = [given.get(k) for k in names[1:]]
    if any(isinstance(i, bool) or not isinstance(i, int | None) for i in ints):
        return None
    if v.target is _aten.select.int:
        (idx,) = ints
        if idx is None or not -size <= idx < size:
            return None
        return [(dim, idx % size, idx % size + 1, 1, True)]
    start, stop, step = ints
    if step is not None and step < 1:
        return None
    lo, hi, step = slice(start, stop, step).indices(size)
    hi = max(lo, hi)
    return [] if (lo, hi, step) == (0, size, 1) else [(dim, lo, hi, step, False)]


def _seen_before(base: fx.Node, write: fx.Node, chain: set[fx.Node], order: dict) -> bool:
    """Whether nothing reads ``base``'s memory after ``write`` but ``base`` itself (which
    will read the cat): every view of it other than the write's own chain is read before the
    write, and nothing writes into one in place before it."""

    def fine(user: fx.Node, of: fx.Node) -> bool:
        if user in chain:
            return all(fine(u, user) for u in user.users)
        if of is base and order[user] > order[write]:
            return True  # a later reader of the tensor itself: it will read the cat
        return read_only_before(user, of, write, order, by_write=True)

    return all(fine(u, base) for u in base.users)


def _value(graph: fx.Graph, write: fx.Node, name: str, region: fx.Node, fill: Any) -> Any:
    """The values ``write`` puts into ``region`` (a node), or None when not known; ``fill``:
    the one value it fills the region with, if it does (:func:`_fill`)."""
    if name == "copy_":
        src = write.args[1] if len(write.args) > 1 else None
        return src if isinstance(src, fx.Node) and "val" in src.meta else None
    if fill is not None:
        # region·0 + c: c wherever the region holds numbers, tied to the region's units (a
        # constant read as fixed data would fix every unit it is concatenated with); region·0
        # alone for c = 0, which every map of the units keeps
        zero = emit_like(graph, write, _aten.mul.Tensor, (region, 0))
        if not isinstance(fill, fx.Node) and fill == 0:
            return zero
        return emit_like(graph, write, _aten.add.Tensor, (zero, fill))
    if name == "fill_":
        return None
    packet = getattr(_aten, name[:-1], None)
    op = getattr(packet, write.target._overloadname, None) if packet is not None else None
    if op is None or _types(op) != _types(write.target):
        return None  # (no such op, or another signature)
    return emit_like(graph, write, op, (region, *write.args[1:]), dict(write.kwargs))


#: ops between a lifted constant and its use that keep its value
_KEEP = {_aten.lift_fresh_copy.default, _aten.detach_.default, _aten.detach.default,
         _aten.clone.default, _aten.alias.default}  # fmt: skip


def _fill(write: fx.Node, name: str, constants: Mapping[str, Any]) -> Any:
    """The one value ``write`` fills its region with: a number (``zero_``, ``fill_`` of a
    Python number or of a 0-dim constant tensor, ``t[:, 0] = 0.0``), a 0-dim tensor node whose
    value is not known here, or None when it is no fill."""
    if name == "zero_":
        return 0
    if name != "fill_" or len(write.args) < 2:
        return None
    value = write.args[1]
    if isinstance(value, int | float | bool):
        return value
    val = value.meta.get("val") if isinstance(value, fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dim() != 0:
        return None
    node = value
    while node.op == "call_function" and node.target in _KEEP and node.args:
        node = node.args[0]
    known = constants.get(node.name) if node.op == "placeholder" else None
    if isinstance(known, torch.Tensor) and known.dim() == 0 and not known.is_complex():
        return known.item()
    return value


def _same_shape(a: tuple, b: tuple) -> bool:
    """Whether two shapes are equal, symbolic sizes compared by their expressions (equal
    sizes written differently count as different: then nothing is rewritten)."""
    return len(a) == len(b) and all(str(x) == str(y) for x, y in zip(a, b, strict=True))


def _fits(write: fx.Node, name: str, r: torch.Tensor, fill: Any) -> bool:
    """Whether the written value can be put into the region's shape by the graph: always
    when the region's sizes are known; with a symbolic size, only a value already of that
    shape (an elementwise op on the region, or a source of the same shape)."""
    if all(isinstance(d, int) for d in r.shape) or name in _ELEMENTWISE:
        return True
    if fill is not None:
        return True  # computed from the region itself
    src = write.args[1] if len(write.args) > 1 else None
    val = src.meta.get("val") if isinstance(src, fx.Node) else None
    return isinstance(val, torch.Tensor) and _same_shape(tuple(val.shape), tuple(r.shape))


def _same_device(write: fx.Node, name: str, r: torch.Tensor) -> bool:
    """Whether what ``copy_`` writes lives on the region's device (a copy across devices is
    not read: the value would stay on its own)."""
    if name != "copy_":
        return True
    src = write.args[1] if len(write.args) > 1 else None
    val = src.meta.get("val") if isinstance(src, fx.Node) else None
    return isinstance(val, torch.Tensor) and val.device == r.device


def _types(op: Any) -> list[str]:
    """The types of an op's arguments, from its schema."""
    return [str(a.type) for a in op._schema.arguments]


def _fit(graph: fx.Graph, write: fx.Node, value: fx.Node, r: torch.Tensor, dtype: Any) -> Any:
    """``value`` given ``dtype`` and broadcast to the region's shape (as the write does)."""
    v = value.meta["val"]
    if v.dtype != dtype:
        value = emit_like(graph, write, _aten._to_copy.default, (value,), {"dtype": dtype})
    if not _same_shape(tuple(v.shape), tuple(r.shape)):
        value = emit_like(graph, write, _aten.expand.default, (value, list(r.shape)))
    return value


def _pieces(graph: fx.Graph, write: fx.Node, t: fx.Node, value: Any, cuts: list[Cut]) -> Any:
    """``t`` with the region ``cuts`` (sorted by dimension) holding ``value``: along the first
    cut, the cat of ``t`` before the region, the region (cut along the rest), ``t`` after; a
    cut with a step as ``slice_scatter``, which symlab reads on fixed data only."""
    dim, start, stop, step, _ = cuts[0]
    size = t.meta["val"].shape[dim]
    mid = value
    if len(cuts) > 1:
        inner = emit_like(graph, write, _aten.slice.Tensor, (t, dim, start, stop, step))
        mid = _pieces(graph, write, inner, value, cuts[1:])
    if step != 1:
        scatter = _aten.slice_scatter.default
        return emit_like(graph, write, scatter, (t, mid, dim, start, stop, step))
    parts = []
    if start > 0:
        parts.append(emit_like(graph, write, _aten.slice.Tensor, (t, dim, 0, start)))
    parts.append(mid)
    if stop < size:
        parts.append(emit_like(graph, write, _aten.slice.Tensor, (t, dim, stop, size)))
    return emit_like(graph, write, _aten.cat.default, (parts, dim))


def emit_like(graph: fx.Graph, write: fx.Node, op: Any, args: tuple, kwargs: Any = None) -> fx.Node:
    """A new aten node with ``write``'s metadata (module stack, source line) and its value
    computed from its arguments' (torch.export's fake tensors)."""
    kwargs = kwargs or {}
    node = graph.call_function(op, args, kwargs)
    node.meta.update({k: v for k, v in write.meta.items() if k != "val"})
    vals = fx.node.map_arg((args, kwargs), lambda n: n.meta["val"])
    node.meta["val"] = op(*vals[0], **vals[1])
    return node
