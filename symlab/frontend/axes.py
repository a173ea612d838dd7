"""Where the feature axis goes under ops that only rearrange a tensor.

``transpose``/``permute``, ``unsqueeze``/``squeeze``, ``expand``, reshapes that keep the
feature axis whole (``x.flatten(2)`` on ``(B, C, H, W)``, ``view(B, T, E)``), and indexing of
other axes (``x[:, 0]``, ``x[:, 1:]``) move each unit's slice to one slice of the result: the
units are the same, only their axis changes. :func:`moved_feature_axis` says where it lands, or
``None`` when the op mixes units (a reshape that splits or merges the feature axis, indexing
into it) — then the front-end falls back to block maps (flatten after a convolution) or an
opaque node (sound).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["RELAYOUT_FUNCS", "IndexTensor", "expand_index", "moved_feature_axis"]

_TRANSPOSE = {torch.transpose, "transpose", torch.swapaxes, "swapaxes", torch.swapdims, "swapdims"}
_PERMUTE = {torch.permute, "permute"}
_UNSQUEEZE = {torch.unsqueeze, "unsqueeze"}
_SQUEEZE = {torch.squeeze, "squeeze"}
_EXPAND = {"expand", "expand_as", torch.broadcast_to, "broadcast_to"}
_RESHAPE = {"view", "reshape", torch.reshape, "flatten", torch.flatten, "unflatten", "reshape_as",
            "view_as"}  # fmt: skip
_INDEX = {operator.getitem}
_REPEAT = {torch.repeat_interleave, "repeat_interleave"}
RELAYOUT_FUNCS: set[Any] = _TRANSPOSE | _PERMUTE | _UNSQUEEZE | _SQUEEZE | _EXPAND | _RESHAPE
RELAYOUT_FUNCS |= _INDEX | _REPEAT


@dataclass(frozen=True)
class IndexTensor:
    """A tensor item of ``x[...]`` (advanced indexing) whose values no symmetry moves (token
    ids, a mask of them): ``ndim`` axes, ``boolean`` for a mask (which consumes ``ndim`` axes
    of ``x`` and gives one, as many rows as it holds ``True``)."""

    ndim: int
    boolean: bool


def moved_feature_axis(
    fn: Any,
    args: tuple[Any, ...],
    fa: int,
    shape_in: tuple[int, ...],
    shape_out: tuple[int, ...],
) -> int | None:
    """The feature axis of the result of ``fn(x, *args)``, where ``x`` has shape ``shape_in``
    and its units on axis ``fa``; ``None`` when the units do not stay whole.

    >>> moved_feature_axis("transpose", (1, 2), 1, (2, 8, 16), (2, 16, 8))
    2
    >>> moved_feature_axis("flatten", (2,), 1, (2, 8, 4, 4), (2, 8, 16))
    1
    >>> moved_feature_axis("view", (2, 64), 1, (2, 8, 8), (2, 64)) is None  # merged: not whole
    True
    >>> import operator
    >>> moved_feature_axis(operator.getitem, ((slice(None), 0),), 2, (2, 5, 8), (2, 8))
    1
    >>> moved_feature_axis("repeat_interleave", (3, 0), 1, (2, 8), (6, 8))
    1
    """
    nd_in = len(shape_in)
    if not 0 <= fa < nd_in:
        return None
    if fn in _TRANSPOSE:
        dims = [int(d) % nd_in for d in args[:2]]
        if len(dims) != 2:
            return None
        return dims[1] if fa == dims[0] else dims[0] if fa == dims[1] else fa
    if fn in _PERMUTE:
        order = args[0] if len(args) == 1 and isinstance(args[0], list | tuple) else args
        order = [int(d) % nd_in for d in order]
        return order.index(fa) if sorted(order) == list(range(nd_in)) else None
    if fn in _INDEX:
        return _index(args[0] if args else None, fa, shape_in, shape_out)
    if fn in _REPEAT:  # (repeats, dim): each slice along another axis repeated (any counts,
        # even a tensor of them): every unit's values stay whole, on the same axis
        dim = args[1] if len(args) > 1 else None
        same = len(shape_out) == nd_in and shape_out[fa] == shape_in[fa]
        return fa if isinstance(dim, int) and same and dim % nd_in != fa else None
    if fn in _SQUEEZE or fn in _UNSQUEEZE or fn in _EXPAND or fn in _RESHAPE:
        return _by_shapes(fa, shape_in, shape_out)
    return None


def _by_shapes(fa: int, shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> int | None:
    """A rearrangement in row-major order keeps unit ``i``'s elements together iff some output
    axis has the same size and the same number of elements after it (and, for expands, the
    same number before it or a broadcast of it)."""
    n = shape_in[fa]
    after = math.prod(shape_in[fa + 1 :])
    before = math.prod(shape_in[:fa])
    hits = [
        j
        for j, m in enumerate(shape_out)
        if m == n and math.prod(shape_out[j + 1 :]) == after and math.prod(shape_out[:j]) >= before
    ]
    if n == 1 or len(hits) != 1:
        return None
    return hits[0]


def expand_index(index: Any, ndim: int) -> list[Any] | None:
    """The items of ``x[index]`` on an ``ndim``-axis tensor with ``...`` spelled out and the
    trailing axes filled with ``slice(None)`` (``None`` items kept: new axes); None for more
    than one ``...`` or anything but ints, slices and ``None`` (tensors, traced values).

    >>> expand_index((Ellipsis, slice(None, 2)), 3)
    [slice(None, None, None), slice(None, None, None), slice(None, 2, None)]
    """
    items = index if isinstance(index, tuple) else (index,)
    if sum(i is Ellipsis for i in items) > 1:
        return None
    if any(not (isinstance(i, int | slice) or i is None or i is Ellipsis) for i in items):
        return None  # tensor (advanced) indexing or a traced value: not modelled
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for i in items:
        if i is Ellipsis:
            expanded += [slice(None)] * (ndim - consumed)
        else:
            expanded.append(i)
    return expanded + [slice(None)] * (ndim - sum(i is not None for i in expanded))


def _index(
    index: Any, fa: int, shape_in: tuple[int, ...], shape_out: tuple[int, ...]
) -> int | None:
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, IndexTensor) for i in items):
        return _advanced(items, fa, shape_in, shape_out)
    expanded = expand_index(index, len(shape_in))
    if expanded is None:
        return None
    axis_in, axis_out = 0, 0
    for i in expanded:
        if i is None:
            axis_out += 1
            continue
        if axis_in == fa:
            whole = isinstance(i, slice) and i == slice(None)
            return axis_out if whole and shape_out[axis_out] == shape_in[fa] else None
        axis_out += 0 if isinstance(i, int) else 1
        axis_in += 1
    return None


def _advanced(
    items: tuple[Any, ...], fa: int, shape_in: tuple[int, ...], shape_out: tuple[int, ...]
) -> int | None:
    """Where the units land under advanced indexing of other axes (NumPy's rules, which torch
    follows): the tensor items broadcast to one block of axes, in their place when they are
    adjacent and in front otherwise; sliced axes keep their order. Only whole-axis slices of
    the units, other slices and tensor items of one or more axes (no ints, ``None``, ``...``
    or 0-dim tensors, which torch reads as ints: their interplay with tensor items is not
    modelled); the predicted rank and width are checked against the result's shape.

    >>> m = IndexTensor(2, True)  # h[mask] on (B, T, E) with a (B, T) mask: (N, E)
    >>> _advanced((m,), 2, (2, 7, 16), (5, 16))
    1
    >>> i = IndexTensor(1, False)  # h[:, idx] on (B, T, E): (B, K, E)
    >>> _advanced((slice(None), i), 2, (2, 7, 16), (2, 3, 16))
    2
    >>> _advanced((i, slice(None), i), 1, (2, 7, 16), (3, 7))  # apart: the block goes first
    1
    >>> _advanced((slice(None), slice(None), i), 2, (2, 7, 16), (2, 7, 3)) is None  # the units
    True
    """
    if any(not isinstance(i, slice | IndexTensor) or getattr(i, "ndim", 1) == 0 for i in items):
        return None  # (torch reads a 0-dim tensor as an int or a bool: basic indexing)
    axes: list[tuple[int, Any]] = []  # (first input axis, item)
    at = 0
    for i in items:
        axes.append((at, i))
        at += i.ndim if isinstance(i, IndexTensor) and i.boolean else 1
    if at > len(shape_in):
        return None
    axes += [(a, slice(None)) for a in range(at, len(shape_in))]
    tensors = [k for k, (_, i) in enumerate(axes) if isinstance(i, IndexTensor)]
    block = max(1 if i.boolean else i.ndim for _, i in (axes[k] for k in tensors))
    adjacent = tensors == list(range(tensors[0], tensors[-1] + 1))
    out = 0 if adjacent else block
    for k, (a, i) in enumerate(axes):
        if adjacent and k == tensors[0]:
            out += block
        if isinstance(i, IndexTensor):
            if a <= fa < a + (i.ndim if i.boolean else 1):
                return None  # the units indexed by a tensor
            continue
        if a == fa:
            whole = i == slice(None)
            n = len(axes) - len(tensors) + block
            return out if whole and len(shape_out) == n and shape_out[out] == shape_in[fa] else None
        out += 1
    return None
