"""Rotary position embeddings and grouped-query attention for the attention matcher.

**RoPE** (Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021)
rotates pairs of query/key dimensions by position-dependent angles::

    q' = q * cos + rotate_half(q) * sin          # rotate_half(q) = cat(-q[..., h:], q[..., :h])
    q' = q * cos + rotate_every_two(q) * sin     # stack(-q[..., 1::2], q[..., ::2]).flatten(-2)

(the half-split layout pairs dimension ``i`` with ``i + r/2``; the interleaved one ``2i`` with
``2i + 1``), optionally on the first ``r`` dimensions only (``cat([q'_rot, q[..., r:]], -1)``).
:func:`rope_sites` proves a site from the graph: the rotation is a signed swap inside each pair
(one half negated), and ``cos``/``sin`` are fixed (no parameter reaches them), the same for
every head, and *pair-symmetric* — elementwise functions of ``cat([F, F], -1)`` (half layout)
or ``F.repeat_interleave(2, -1)`` (interleaved), so both members of a pair turn by the same
angle. On each pair the op is then ``c I + s J`` with ``J`` the quarter turn, and a map ``A``
of the query dimensions survives exactly when it commutes with every such rotation: per pair a
complex scaling ``aI + bJ`` (for distinct frequencies nothing else), with ``A⁻ᵀ`` on the keys,
GL on the dimensions left unrotated. The rule is :mod:`symlab.symmetry.rope_rules`.

**Grouped-query attention** (Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
Models from Multi-Head Checkpoints", EMNLP 2023): keys and values of ``G`` heads, each read by
``n`` query heads, repeated group-major (``k[:, :, None].expand(B, G, n, T, D).reshape(B, G*n,
T, D)`` or ``scaled_dot_product_attention(..., enable_gqa=True)``); the matcher records ``n``.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from symlab.frontend.patterns.attention_base import _NoMatch, _require, _shape, _State, _Val
from symlab.frontend.patterns.attention_forms import fixed

__all__ = ["RopeSite", "gqa_step", "rope_sites", "rope_step"]

_MUL = {operator.mul, torch.mul, "mul"}
_ADD = {operator.add, torch.add, "add"}
_NEG = {operator.neg, torch.neg, "neg"}
_CAT = {torch.cat, torch.concat}
_CASTS = {"to", "float", "double", "half", "type_as", "contiguous"}
_UNARY = {torch.cos, torch.sin, "cos", "sin", torch.ops.aten.cos.default,
          torch.ops.aten.sin.default}  # fmt: skip
_UNSQUEEZE = {"unsqueeze", torch.unsqueeze}
_REPEAT = {torch.repeat_interleave, "repeat_interleave", torch.ops.aten.repeat_interleave.self_int}
_CACHE: weakref.WeakKeyDictionary[fx.GraphModule, tuple[int, dict[fx.Node, RopeSite]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class RopeSite:
    """One rotary embedding of ``x``: its output, layout, rotated dimensions, the nodes inside
    (not stepped by the matcher) and the fixed ``cos``/``sin`` tensors it reads."""

    x: fx.Node
    out: fx.Node
    layout: str  # "half" | "interleaved"
    dims: int  # rotated dimensions (the first ``dims`` of the head dimension)
    inner: frozenset[fx.Node]
    tables: tuple[fx.Node, fx.Node]


def _is(n: Any, targets: set[Any]) -> bool:
    return (
        isinstance(n, fx.Node)
        and n.op in ("call_function", "call_method")
        and (n.target in targets)
    )


def _last_slice(n: Any, x: fx.Node) -> tuple[str, int, int] | None:
    """``(part, step offset, size)`` when ``n = x[..., a:b:s]`` slices only the last axis:
    part ``first``/``last`` (contiguous start or end, step 1) or ``even``/``odd`` (step 2)."""
    if not _is(n, {operator.getitem}) or not isinstance(n.args[1], tuple):
        return None
    if n.args[0] is not x and not _twin(n.args[0], x):
        return None
    idx, nd = list(n.args[1]), len(_shape(x))
    if idx and idx[0] is Ellipsis:
        idx = [slice(None)] * (nd - len(idx) + 1) + idx[1:]
    if len(idx) != nd or any(i != slice(None) for i in idx[:-1]) or not isinstance(idx[-1], slice):
        return None
    s, size = idx[-1], _shape(n)[-1]
    if s.step in (None, 1):
        if s.start in (None, 0):
            return "first", 0, size
        if s.stop is None or (isinstance(s.stop, int) and s.stop >= _shape(x)[-1]):
            return "last", 0, size
        return None
    end = s.stop is None or (isinstance(s.stop, int) and s.stop >= _shape(x)[-1])
    if s.step == 2 and end and s.start in (None, 0, 1):
        return ("odd" if s.start == 1 else "even"), 0, size
    return None


def _twin(a: Any, x: fx.Node) -> bool:
    """``a`` computes the same value as ``x``: the same cast of the same tensor, made twice
    (``q.float() * cos + rotate_half(q.float()) * sin``)."""
    return (
        _is(a, _CASTS) and _is(x, _CASTS) and a is not x and a.target == x.target
        and a.args[0] is x.args[0] and a.args[1:] == x.args[1:] and a.kwargs == x.kwargs
    )  # fmt: skip


def _negated(n: Any) -> tuple[fx.Node, bool]:
    if _is(n, _NEG):
        return n.args[0], True
    if _is(n, _MUL) and len(n.args) == 2 and n.args[1] == -1:
        return n.args[0], True
    return n, False


def _rotated(r: Any, x: fx.Node, inner: set[fx.Node]) -> str | None:
    """The layout when ``r`` is ``x`` with each pair swapped and exactly one member negated."""
    if _is(r, _CAT) and isinstance(r.args[0], list | tuple):
        dim = r.args[1] if len(r.args) > 1 else r.kwargs.get("dim", 0)
        parts = list(r.args[0])
        if len(parts) != 2 or dim % len(_shape(r)) != len(_shape(r)) - 1:
            return None
        (a, na), (b, nb) = _negated(parts[0]), _negated(parts[1])
        sa, sb = _last_slice(a, x), _last_slice(b, x)
        d = _shape(x)[-1]
        if sa is None or sb is None or na == nb or sa[2] * 2 != d or sb[2] * 2 != d:
            return None
        if (sa[0], sb[0]) != ("last", "first"):
            return None
        inner |= {r, a, b, *(p for p in parts if p not in (a, b))}
        inner |= {s.args[0] for s in (a, b) if s.args[0] is not x}  # a twin cast of x
        return "half"
    # interleaved: stack((-x[..., 1::2], x[..., ::2]), -1).flatten(-2)
    if not (_is(r, {"flatten", torch.flatten, "view", "reshape"}) and len(r.users) >= 1):
        return None
    st = r.args[0]
    if not (_is(st, {torch.stack}) and isinstance(st.args[0], list | tuple)):
        return None
    parts = list(st.args[0])
    if len(parts) != 2 or _shape(r) != _shape(x) or _shape(st)[-1] != 2:
        return None
    (a, na), (b, nb) = _negated(parts[0]), _negated(parts[1])
    sa, sb = _last_slice(a, x), _last_slice(b, x)
    if sa is None or sb is None or na == nb or (sa[0], sb[0]) != ("odd", "even"):
        return None
    inner |= {r, st, a, b, *(p for p in parts if p not in (a, b))}
    inner |= {s.args[0] for s in (a, b) if s.args[0] is not x}  # a twin cast of x
    return "interleaved"


def _pair_symmetric(t: Any, layout: str, dims: int, seen: set[fx.Node]) -> bool:
    """``t`` gives both members of every pair the same value: an elementwise function
    (casts, cos/sin, scalar products, unsqueezes off the last axis) of ``cat([F, F], -1)``
    (half layout) or ``F.repeat_interleave(2, -1)`` (interleaved)."""
    for _ in range(32):
        if not isinstance(t, fx.Node) or _shape(t)[-1] != dims:
            return False
        seen.add(t)
        if (
            t.op == "call_function"
            and not t.args
            and getattr(t.target, "__name__", "") == ("constant")
        ):  # torch.export folded the table (no buffer in it): check its values
            return _pairs_equal(t.target(), layout, dims)
        if _is(t, _CASTS | _UNARY):
            t = t.args[0]
        elif _is(t, _MUL | {operator.truediv}) and len(t.args) == 2:
            nums = [a for a in t.args if isinstance(a, int | float)]
            if len(nums) != 1:
                return False
            t = next(a for a in t.args if not isinstance(a, int | float))
        elif (
            _is(t, {operator.getitem})
            and isinstance(t.args[1], tuple)
            and all(a is None or a is Ellipsis or a == slice(None) for a in t.args[1])
        ):  # t[None, :, ...]: new axes only (a new last axis fails the width check above)
            t = t.args[0]
        elif _is(t, _UNSQUEEZE):
            dim = t.args[1] if len(t.args) > 1 else t.kwargs.get("dim")
            if not isinstance(dim, int) or dim % len(_shape(t)) == len(_shape(t)) - 1:
                return False
            t = t.args[0]
        elif layout == "half" and _is(t, _CAT):
            parts = t.args[0]
            dim = t.args[1] if len(t.args) > 1 else t.kwargs.get("dim", 0)
            return (
                isinstance(parts, list | tuple) and len(parts) == 2 and parts[0] is parts[1]
                and isinstance(dim, int) and dim % len(_shape(t)) == len(_shape(t)) - 1
            )  # fmt: skip
        elif layout == "interleaved" and _is(t, _REPEAT):
            rep = t.args[1] if len(t.args) > 1 else t.kwargs.get("repeats")
            dim = t.args[2] if len(t.args) > 2 else t.kwargs.get("dim")
            return rep == 2 and isinstance(dim, int) and dim % len(_shape(t)) == len(_shape(t)) - 1
        else:
            return False
    return False


def _pairs_equal(value: Any, layout: str, dims: int) -> bool:
    """A folded table gives both members of every pair the same value (on the example's
    shapes, which is what torch.export traced)."""
    if not isinstance(value, torch.Tensor) or value.shape[-1] != dims or dims % 2:
        return False
    if layout == "half":
        a, b = value[..., : dims // 2], value[..., dims // 2 :]
    else:
        a, b = value[..., 0::2], value[..., 1::2]
    return bool(torch.equal(a, b))


def _site(add: fx.Node, gm: fx.GraphModule) -> RopeSite | None:
    if not (_is(add, _ADD) and len(add.args) == 2 and not add.kwargs):
        return None
    m1, m2 = add.args
    inner: set[fx.Node] = set()
    for first, second in ((m1, m2), (m2, m1)):
        if not (_is(first, _MUL) and _is(second, _MUL)):
            continue
        for x, c in (first.args, first.args[::-1]):
            for r, s in (second.args, second.args[::-1]):
                if not isinstance(x, fx.Node) or not isinstance(c, fx.Node):
                    continue
                found: set[fx.Node] = set()
                layout = _rotated(r, x, found)
                if layout is None or not fixed(c, gm) or not fixed(s, gm):
                    continue
                dims = _shape(x)[-1]
                seen: set[fx.Node] = set()
                if not (_pair_symmetric(c, layout, dims, seen)
                        and _pair_symmetric(s, layout, dims, seen)):  # fmt: skip
                    continue
                inner |= found | {first, second}
                return _partial(RopeSite(x, add, layout, dims, frozenset(inner), (c, s)))  # type: ignore[arg-type]
    return None


def _partial(site: RopeSite) -> RopeSite:
    """Widen a site on ``q[..., :r]`` to ``cat([site, q[..., r:]], -1)`` when that is its only
    use (partial rotary embeddings, GPT-NeoX)."""
    x = site.x
    sl = _last_slice(x, x.args[0]) if _is(x, {operator.getitem}) else None
    users = list(site.out.users)
    if sl is None or sl[0] != "first" or len(users) != 1 or not _is(users[0], _CAT):
        return site
    cat, q = users[0], x.args[0]
    parts = cat.args[0]
    if not (isinstance(parts, list | tuple) and len(parts) == 2 and parts[0] is site.out):
        return site
    rest = _last_slice(parts[1], q)
    if rest is None or rest[0] != "last" or rest[2] + sl[2] != _shape(q)[-1]:
        return site
    if _shape(cat) != _shape(q):
        return site
    inner = site.inner | {x, parts[1], site.out}
    return RopeSite(q, cat, site.layout, site.dims, inner, site.tables)  # type: ignore[arg-type]


def rope_sites(gm: fx.GraphModule) -> dict[fx.Node, RopeSite]:
    """Every proven rotary embedding of ``gm``, keyed by its output node (cached per graph)."""
    n_nodes = len(gm.graph.nodes)
    hit = _CACHE.get(gm)
    if hit is not None and hit[0] == n_nodes:
        return hit[1]
    sites: dict[fx.Node, RopeSite] = {}
    for n in gm.graph.nodes:
        try:
            site = _site(n, gm)
        except (_NoMatch, TypeError, ValueError, IndexError, AttributeError, KeyError):
            site = None
        if site is not None:
            sites[site.out] = site
    _CACHE[gm] = (n_nodes, sites)
    return sites


def rope_step(node: fx.Node, st: _State, site: RopeSite) -> _Val:
    """Labels after a rotary embedding: those of its input; the pairing is recorded."""
    x = st.vals[site.x]
    _require(x.kind == "proj" and x.labels[-1].startswith("d:") and _shape(node) == x.shape)
    i = x.labels[-1][2:]
    head = x.labels.index(f"h:{i}") - len(x.labels)
    for t in site.tables:  # the same angles for every head
        shape = _shape(t)
        _require(len(shape) < -head or shape[head] == 1)
    _require(i not in st.rope)
    st.rope[i] = (site.layout, site.dims)
    return _Val("proj", x.labels, x.shape)


def gqa_step(node: fx.Node, st: _State) -> _Val | None:
    """Labels through ``repeat_kv`` (unsqueeze after the head axis, expand it, merge it into the
    heads, group-major); None for other ops."""
    t = node.target
    src = node.args[0] if node.args else None
    if src not in st.vals:
        return None
    x = st.vals[src]  # type: ignore[index]
    if x.kind != "proj" or not x.labels[-1].startswith("d:"):
        return None
    i = x.labels[-1][2:]
    shape = _shape(node)
    if t in _UNSQUEEZE or (t is operator.getitem and isinstance(node.args[1], tuple)
                           and None in node.args[1]):  # fmt: skip
        if t in _UNSQUEEZE:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            _require(isinstance(dim, int))
            dim %= len(shape)  # type: ignore[operator]
        else:
            idx = list(node.args[1])  # type: ignore[arg-type]
            _require(idx.count(None) == 1 and all(a == slice(None) or a is None for a in idx))
            dim = idx.index(None)
        _require(len(shape) == len(x.shape) + 1 and shape[dim] == 1)
        _require(dim >= 1 and x.labels[dim - 1] == f"h:{i}")  # right after the heads
        return _Val("proj", (*x.labels[:dim], "1", *x.labels[dim:]), shape)
    if t == "expand" and "1" in x.labels:
        k = x.labels.index("1")
        _require(len(shape) == len(x.shape))
        _require(all(a == b for j, (a, b) in enumerate(zip(shape, x.shape, strict=True)) if j != k))
        return _Val("proj", (*x.labels[:k], "e", *x.labels[k + 1 :]), shape)
    if t in ("reshape", "view", torch.reshape) and "e" in x.labels:
        k = x.labels.index("e")
        _require(len(shape) == len(x.shape) - 1 and x.labels[k - 1] == f"h:{i}")
        _require(shape[: k - 1] == x.shape[: k - 1] and shape[k:] == x.shape[k + 1 :])
        _require(shape[k - 1] == x.shape[k - 1] * x.shape[k] and i not in st.rep)
        st.rep[i] = x.shape[k]
        return _Val("proj", (*x.labels[:k], *x.labels[k + 1 :]), shape)
    return None
