"""Recognise multi-head attention written by hand in a torch.fx graph.

The pattern, from three ``nn.Linear`` projections to an output ``nn.Linear``::

    q = self.q(x).view(B, T, H, D).transpose(1, 2)     # or .unflatten(-1, (H, D)), .reshape
    k = self.k(x).view(B, T, H, D).transpose(1, 2)
    v = self.v(x).view(B, T, H, Dv).transpose(1, 2)
    a = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)   # or / math.sqrt(D); dropout
    y = (a @ v).transpose(1, 2).reshape(B, T, H * Dv)   # or .flatten(2), .contiguous().view
    return self.o(y)                                    # or F.scaled_dot_product_attention

is collapsed into one ``attention_linear`` graph node (rule in
:mod:`symlab.symmetry.attention_rules`). The match is an abstract interpretation that labels
every axis of every tensor between the projections and ``o``: ``h:i``/``d:i`` (heads and head
dimension of projection ``i``), ``H`` (heads once two projections met), ``m`` (the merged
heads) or ``x`` (batch and token axes, which no symmetry touches). It proves that
(1) scores contract the head dimension of one projection with that of another, head by head;
(2) the values are multiplied by a function of the scores only, head by head; (3) the heads
are merged head-major into the last axis read by ``o``; (4) no intermediate tensor is read by
anything else. Any op outside the short list below, any other axis arrangement, or any
outside reader makes the match fail, and the ops are then traced one by one (opaque: sound).
Reshapes are judged from the shapes of the example input, like the rest of the front-end.

:mod:`.attention_forms` extends the pattern with fused projections (one Linear
cut into q/k/v row blocks: an ``attention_fused`` node), fixed masks on the scores (causal
``masked_fill``, added masks, ``attn_mask``/``is_causal``) and two-operand ``torch.einsum``;
:mod:`.attention_emit` writes the graph nodes.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from symlab.frontend.fxutil import flat_nodes, module_calls
from symlab.frontend.patterns import attention_forms as forms
from symlab.frontend.patterns.attention_base import (
    _IDENTITY,
    _LINEARS,
    _MATMUL,
    _MAX_NODES,
    _RESHAPE,
    _SCALE,
    _SOFTMAX,
    _TRANSPOSE,
    AttentionMatch,
    _is_tensor,
    _NoMatch,
    _require,
    _shape,
    _shape_scalar,
    _State,
    _Val,
)
from symlab.frontend.patterns.attention_emit import emit
from symlab.frontend.patterns.attention_qknorm import norm_sites, norm_step, score_function_step
from symlab.frontend.patterns.attention_rope import gqa_step, rope_sites, rope_step
from symlab.frontend.patterns.conv1d import Conv1DProjection
from symlab.frontend.patterns.conv1d import projections as conv1d_projections
from symlab.frontend.patterns.registry import register_pattern

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["AttentionMatch", "emit_attention", "find_attention"]


def _data_args(node: fx.Node, gm: fx.GraphModule) -> list[fx.Node]:
    """The tensor inputs of an op the pattern may contain; raises _NoMatch for any other op."""
    t = node.target
    site = rope_sites(gm).get(node) or norm_sites(gm).get(node)
    if site is not None:
        return [site.x]
    extra = forms.data_args(node, gm)
    if extra is not None:
        return extra
    if node.op == "call_module":
        _require(type(gm.get_submodule(str(t))) in (nn.Dropout, nn.Identity))
        return [node.args[0]]  # type: ignore[list-item]
    _require(node.op in ("call_function", "call_method") and _is_tensor(node))
    if t == F.scaled_dot_product_attention:
        return _sdpa_args(node)
    if t in _MATMUL:
        args = list(node.args[:2])
    elif t in _SCALE:
        args = [a for a in node.args if isinstance(a, fx.Node) and _is_tensor(a)]
        if len(args) == 2:  # a fixed tensor factor (per token) is no data of the block
            args = [a for a in args if not forms.fixed(a, gm)]
            _require(len(args) == 1)
    else:
        args = [node.args[0]]
    _require(all(isinstance(a, fx.Node) for a in args))
    return args  # type: ignore[return-value]


def _sdpa_args(node: fx.Node) -> list[fx.Node]:
    names = ("query", "key", "value")
    qkv = list(node.args[:3]) + [node.kwargs[n] for n in names[len(node.args) :]]
    _require(all(isinstance(a, fx.Node) for a in qkv))
    return qkv  # type: ignore[return-value]


def _broadcast(a: _Val, b: _Val) -> tuple[list[str], str, str]:
    """Batch labels of a matmul (heads must meet heads, size for size); the two head labels."""
    la, lb, sa, sb = a.labels[:-2], b.labels[:-2], a.shape[:-2], b.shape[:-2]
    n = max(len(la), len(lb))
    la, lb = ("x",) * (n - len(la)) + la, ("x",) * (n - len(lb)) + lb
    sa, sb = (1,) * (n - len(sa)) + sa, (1,) * (n - len(sb)) + sb
    out, heads = [], []
    for x, y, p, q in zip(la, lb, sa, sb, strict=True):
        head_x, head_y = x[0] in "hH", y[0] in "hH"
        _require(head_x == head_y and x[0] in "hHx" and y[0] in "hHx")
        if head_x:
            _require(p == q)
            heads.append((x, y))
        out.append("H" if head_x else "x")
    _require(len(heads) == 1)
    return out, *heads[0]


def _step(node: fx.Node, st: _State, gm: fx.GraphModule) -> _Val:
    t = node.target
    site = rope_sites(gm).get(node)
    if site is not None:
        return rope_step(node, st, site)
    norm = norm_sites(gm).get(node)
    if norm is not None:
        return norm_step(node, st, norm)
    val = forms.step(node, st)
    if val is None:
        val = gqa_step(node, st)
    if val is None:
        val = score_function_step(node, st)
    if val is not None:
        return val
    shape = _shape(node)
    if node.op == "call_module" or t in _IDENTITY:
        if t is F.dropout:
            _require(all(_shape_scalar(a) or isinstance(a, bool) for a in node.args[1:]))
        src = st.vals[node.args[0]]  # type: ignore[index]
        return _Val(src.kind, src.labels, shape)
    if t == F.scaled_dot_product_attention:
        return _sdpa(node, st, shape)
    if t in _MATMUL:
        return _matmul(node, st, shape)
    (src,) = _data_args(node, gm)
    x = st.vals[src]
    if t in _TRANSPOSE:
        nd = len(x.labels)
        if t in ("transpose", torch.transpose):
            i, j = (int(d) % nd for d in (*node.args[1:], *node.kwargs.values()))
            order = list(range(nd))
            order[i], order[j] = j, i
        else:
            dims = node.args[1:] if t == "permute" else node.args[1:2]
            dims = dims[0] if len(dims) == 1 and isinstance(dims[0], list | tuple) else dims
            order = [int(d) % nd for d in dims]  # type: ignore[union-attr]
        _require(sorted(order) == list(range(nd)))
        return _Val(x.kind, tuple(x.labels[i] for i in order), shape)
    if t in _SCALE:
        args = list(node.args)
        _require(len(args) == 2 and not node.kwargs)
        other = args[1] if args[0] is src else args[0]
        numerator = args[0] is src  # c / x is not linear in x
        _require(numerator or t in (operator.mul, torch.mul, "mul"))
        if not _shape_scalar(other):  # a fixed tensor: one number per token, every head alike
            _require(isinstance(other, fx.Node) and forms.per_token(other, x) and shape == x.shape)
            st.shift_kept = False  # not a shift of a query's scores (a per-key factor)
        return _Val(x.kind, x.labels, shape)
    if t in _SOFTMAX:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        _require(x.kind == "scores" and isinstance(dim, int) and x.labels[-1] == "x")
        _require(dim % len(shape) == len(shape) - 1)  # over the keys, never over the heads
        _require(set(node.kwargs) <= {"dim", "dtype", "_stacklevel"})
        return _Val("scores", x.labels, shape)
    if t in _RESHAPE:
        if shape == x.shape:  # a reshape to the same shape changes nothing
            return _Val(x.kind, x.labels, shape)
        if x.kind == "proj" and x.labels[-1].startswith("f:"):  # split the heads off
            _require(len(shape) == len(x.shape) + 1 and shape[:-2] == x.shape[:-1])
            i = x.labels[-1][2:]
            _require(st.split.setdefault(i, shape[-2:]) == shape[-2:])  # type: ignore[arg-type]
            return _Val("proj", (*x.labels[:-1], f"h:{i}", f"d:{i}"), shape)
        _require(x.kind == "out" and x.labels[-2] == "H" and x.labels[-1].startswith("d:"))
        _require(len(shape) == len(x.shape) - 1 and shape[:-1] == x.shape[:-2])
        return _Val("merged", (*x.labels[:-2], "m"), shape)
    raise _NoMatch


def _matmul(node: fx.Node, st: _State, shape: tuple[int, ...]) -> _Val:
    _require(not node.kwargs and len(node.args) == 2)
    a, b = (st.vals[n] for n in node.args)  # type: ignore[index]
    _require(min(len(a.labels), len(b.labels)) >= 3)
    batch, ha, hb = _broadcast(a, b)
    if a.kind == "proj" and b.kind == "proj":  # scores: q @ kᵀ
        _require(st.qk is None and a.labels[-2] == "x" and b.labels[-1] == "x")
        qa, kb = a.labels[-1], b.labels[-2]
        _require(qa.startswith("d:") and kb.startswith("d:") and qa != kb)
        _require(ha == "h:" + qa[2:] and hb == "h:" + kb[2:])
        st.qk = (qa[2:], kb[2:])
        return _Val("scores", (*batch, "x", "x"), shape)
    _require(a.kind == "scores" and b.kind == "proj" and st.v is None and st.qk is not None)
    _require(a.labels[-2:] == ("x", "x") and b.labels[-2] == "x" and b.labels[-1][:2] == "d:")
    i = b.labels[-1][2:]
    _require(ha == "H" and hb == f"h:{i}" and i not in st.qk)
    st.v = i
    return _Val("out", (*batch, "x", f"d:{i}"), shape)


def _sdpa(node: fx.Node, st: _State, shape: tuple[int, ...]) -> _Val:
    allowed = {"query", "key", "value", "dropout_p", "is_causal", "scale", "attn_mask",
               "enable_gqa"}  # fmt: skip
    _require(len(node.args) <= 3 and set(node.kwargs) <= allowed)
    _require(st.qk is None and st.v is None)
    for key in ("dropout_p", "scale"):
        _require(node.kwargs.get(key) is None or _shape_scalar(node.kwargs[key]))
    _require(isinstance(node.kwargs.get("is_causal", False), bool))
    q, k, v = (st.vals[n] for n in _sdpa_args(node))
    _require(q.kind == k.kind == v.kind == "proj")
    _require(len(q.labels) == len(k.labels) == len(v.labels) >= 3)
    ids = [p.labels[-1][2:] for p in (q, k, v)]
    _require(len(set(ids)) == 3 and all(p.labels[-1][:2] == "d:" for p in (q, k, v)))
    heads = [
        p.labels.index(f"h:{i}") if f"h:{i}" in p.labels else -1
        for p, i in zip((q, k, v), ids, strict=True)
    ]
    _require(heads[0] == heads[1] == heads[2] < len(q.labels) - 2)
    hq, hk = q.shape[heads[0]], k.shape[heads[0]]
    _require(hk == v.shape[heads[0]])
    if node.kwargs.get("enable_gqa", False) is True and hq != hk:  # keys/values repeated
        _require(hq % hk == 0 and ids[1] not in st.rep and ids[2] not in st.rep)
        st.rep[ids[1]] = st.rep[ids[2]] = hq // hk
    else:
        _require(isinstance(node.kwargs.get("enable_gqa", False), bool) and hq == hk)
    for p in (q, k, v):
        _require(all(lab == "x" for j, lab in enumerate(p.labels[:-1]) if j != heads[0]))
    st.qk, st.v = (ids[0], ids[1]), ids[2]
    labels = ["x"] * (len(q.labels) - 1) + [f"d:{ids[2]}"]
    labels[heads[0]] = "H"
    out = _Val("out", tuple(labels), shape)
    forms.sdpa_mask(node, out, st)  # a fixed mask, the same for every head or per head
    return out


def _match(
    o: fx.Node, linears: dict[fx.Node, nn.Module], gm: fx.GraphModule, taken: set[fx.Node]
) -> AttentionMatch:
    """Match the block ending in ``o`` (its projections must not be the output of a block
    matched before: ``taken``)."""
    src = _src(o, linears[o])
    _require(isinstance(src, fx.Node))
    interior: set[fx.Node] = set()
    rope_inner: set[fx.Node] = set()  # nodes of rotary embeddings and QK-norms
    sites = rope_sites(gm)
    norms = norm_sites(gm)
    leaves: dict[str, fx.Node] = {}
    todo = [src]
    while todo:
        n = todo.pop()
        if n in interior or n in leaves.values():
            continue
        if n in linears and n is not o:
            leaves[str(len(leaves))] = n
            continue
        interior.add(n)
        site = sites.get(n) or norms.get(n)
        if site is not None:  # a rotary embedding or a norm: proven whole, not stepped
            rope_inner |= site.inner
            interior |= site.inner
        _require(len(interior) <= _MAX_NODES)
        todo.extend(_data_args(n, gm))
    _require(1 <= len(leaves) <= 3 and not any(n in taken for n in leaves.values()))
    o_reads = {o} | (set(linears[o].match.nodes) if _is_conv1d(linears[o]) else set())
    for n in [*interior, *leaves.values()]:  # nothing outside may read an inner tensor
        for u in n.users:
            inside = u in interior or u in o_reads
            _require(inside or forms.reads_shape_only(u, n))
    st = _State()
    for i, leaf in leaves.items():
        shape = _shape(leaf)
        st.vals[leaf] = _Val("proj", ("x",) * (len(shape) - 1) + (f"f:{i}",), shape)
    for n in gm.graph.nodes:
        if n in interior and n not in rope_inner:
            st.vals[n] = _step(n, st, gm)
            _track_softmax(n, st)
    out = st.vals[src]
    _require(out.kind == "merged" and out.labels[-1] == "m" and st.qk is not None)
    (hq, dq), (hk, _), (hv, dv) = (st.split[i] for i in (*st.qk, st.v))  # type: ignore[index]
    rep = st.rep.get(st.qk[1], 1)  # type: ignore[index]
    _require(rep == st.rep.get(st.v, 1) and hk == hv and hq == hk * rep and st.qk[0] not in st.rep)  # type: ignore[index]
    _require(linears[o].in_features == hq * dv)
    ropes = {st.rope[i] for i in st.qk if i in st.rope}  # type: ignore[union-attr]
    _require(len(ropes) <= 1 and st.v not in st.rope)  # one pairing; values never rotated
    rope = ropes.pop() if ropes else None
    roles = (*st.qk, st.v)
    rows = [st.rows[r] if r in st.rows else (r, 0, linears[leaves[r]].out_features) for r in roles]
    for j, leaf in leaves.items():  # every row of every projection Linear serves one role
        cuts = sorted((off, off + n) for i, off, n in rows if i == j)
        _require([a for a, _ in cuts] == [0, *(b for _, b in cuts[:-1])])
        _require(cuts[-1][1] == linears[leaf].out_features)
    q, k, v = (leaves[r[0]] for r in rows)
    masks = forms.mask_nodes(interior, gm) | _table_nodes(interior, sites, gm)
    _require(set(st.norms) <= set(st.qk))  # a norm of the queries or keys, nothing else
    normed = tuple((("q", "k")[st.qk.index(i)], *st.norms[i]) for i in st.qk if i in st.norms)
    soft = st.weighted_by_softmax and st.shift_kept and st.qk[1] not in st.rope  # type: ignore[index]
    soft = soft and st.qk[1] not in st.norms and not st.by_head  # (rows of keys not one block)
    cut = None if not st.rows else tuple((leaves[i], off, n) for i, off, n in rows)
    projs = tuple((n, linears[n]) for n in (*leaves.values(), o) if _is_conv1d(linears[n]))
    by_head = tuple((leaves[j], *st.by_head[j]) for j in sorted(st.by_head))
    return AttentionMatch(q, k, v, o, frozenset(interior), hq, dq, dv, cut, masks, soft, hk, rope,
                          projs, st.head_bias, normed, by_head)  # fmt: skip


def _is_conv1d(proj: object) -> bool:
    return isinstance(proj, Conv1DProjection)


def _src(o: fx.Node, proj: object) -> object:
    """The input of a projection: a Linear's argument, or the tensor a Conv1D reads."""
    if _is_conv1d(proj):
        return proj.match.x  # type: ignore[attr-defined]
    _require(len(o.args) == 1 and not o.kwargs)
    return o.args[0]


def _table_nodes(interior: set[fx.Node], sites: dict, gm: fx.GraphModule) -> frozenset[fx.Node]:
    """The fixed nodes the cos/sin tables of the block's rotary embeddings are computed from."""
    found: set[fx.Node] = set()
    for n in interior:
        if n in sites:
            for t in sites[n].tables:
                seen: set[fx.Node] = set()
                forms._fixed(t, gm, seen)
                found |= seen
    return frozenset(found - interior)


def _track_softmax(n: fx.Node, st: _State) -> None:
    """Whether the values end up weighted by a softmax over the keys of scores that were only
    scaled or masked before it: then adding the same amount to every score of a query (what a
    key bias does) changes nothing. A finite ``masked_fill`` breaks that (its entries do not
    move with the others); ``-inf`` keeps it."""
    val = st.vals[n]
    srcs = [a for a in flat_nodes((n.args, n.kwargs)) if a in st.vals]
    scores_in = [a for a in srcs if st.vals[a].kind == "scores"]
    if n.target == F.scaled_dot_product_attention:
        st.weighted_by_softmax = True
    elif n.target in _SOFTMAX or (val.kind == "scores" and any(a in st.soft for a in srcs)):
        st.soft.add(n)
    elif val.kind == "scores" and scores_in:
        fill = forms.masked_fill_value(n)
        if fill is not None and fill != float("-inf"):
            st.shift_kept = False
    if val.kind == "out" and scores_in:
        st.weighted_by_softmax = all(a in st.soft for a in scores_in)


def find_attention(gm: fx.GraphModule) -> tuple[dict[fx.Node, AttentionMatch], set[fx.Node]]:
    """Matches keyed by their output Linear call, and every node they swallow (q/k/v calls
    and the ops between them and the output)."""
    calls = module_calls(gm)
    linears = {
        n: gm.get_submodule(str(n.target))
        for n in gm.graph.nodes
        if n.op == "call_module" and calls[str(n.target)] == 1
        and type(gm.get_submodule(str(n.target))) in _LINEARS
    }  # fmt: skip
    linears.update(conv1d_projections(gm))  # GPT-2's Conv1D: linear maps with (in, out) weights
    banned: set[fx.Node] = set()  # blocks whose mask buffers are also read elsewhere
    while True:
        matches: dict[fx.Node, AttentionMatch] = {}
        skip: set[fx.Node] = set()
        for o in linears:
            if o in skip or o in banned:
                continue
            try:
                m = _match(o, linears, gm, set(matches))
            except (_NoMatch, KeyError, IndexError, TypeError, ValueError, AttributeError):
                continue
            matches[o] = m
            skip |= m.interior | {m.q, m.k, m.v}
            for _, proj in m.projs:  # the addmm and views of Conv1D projections
                skip |= set(proj.match.nodes)
        bad = forms.settle_masks(matches, skip)
        if not bad:
            return matches, skip
        banned |= bad


def emit_attention(cv: Converter, m: AttentionMatch) -> str:
    """Add the node of ``m`` to the converter's graph (see :mod:`.attention_emit`)."""
    return emit(cv, m)


register_pattern("attention", find_attention, emit_attention)
