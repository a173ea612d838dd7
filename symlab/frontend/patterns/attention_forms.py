"""More written forms of multi-head attention for :mod:`symlab.frontend.patterns.attention`.

Three families of forms, each proven with the same axis labels as the base matcher:

* **Fused projections** (nanoGPT, timm): one ``nn.Linear`` whose rows are the blocks of
  several projections, cut by ``.split``/``.chunk``/``torch.split`` on the feature axis (each
  part then split into heads as usual), or reshaped to ``(..., S, H, D)`` and selected by
  ``.unbind``/``[i]`` on the ``S`` axis. Which rows serve as queries, keys and values is read
  off the cut, so the rows of every block are head-major by construction (labels ``s``
  selector, ``y:j``/``z:j`` heads and head dimension of fused Linear ``j`` before selection).
* **Masks** on the scores: ``scores.masked_fill(mask, value)``, ``scores + mask`` and
  ``F.scaled_dot_product_attention(..., attn_mask=mask)``. A mask keeps every symmetry when
  it is *fixed* (computed only from network inputs, buffers, constants and tensor sizes, never
  from a parameter or a module output) and the same for every head (size 1 on the head axis),
  so that permuting heads does not move it.
* **einsum**: two-operand ``torch.einsum`` whose subscripts contract exactly the head
  dimensions of two projections, head letter kept (scores), or only token axes of the scores
  against a projection, its head dimension kept (values). ``"bhid,bhjd->bhij"``,
  ``"bhij,bhjd->bhid"``, ``"bqhd,bkhd->bhqk"`` and ``"bhqk,bkhd->bqhd"`` are such equations.

Anything else stays outside the match (opaque: sound).
"""

from __future__ import annotations

import operator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch.nn import functional as F

from symlab.frontend.patterns.attention_base import (
    _SCALE,
    _is_tensor,
    _require,
    _shape,
    _shape_scalar,
    _State,
    _Val,
)

if TYPE_CHECKING:
    from symlab.frontend.patterns.attention_base import AttentionMatch

__all__ = [
    "data_args",
    "fixed",
    "mask_nodes",
    "per_token",
    "reads_shape_only",
    "sdpa_mask",
    "settle_masks",
    "step",
]

_SPLIT = {"split", "chunk", torch.split, torch.chunk}
_UNBIND = {"unbind", torch.unbind}
_MASKED_FILL = {"masked_fill", torch.masked_fill}
_ADD = {operator.add, torch.add, "add"}
_EINSUM = {torch.einsum}
_SHAPE_ONLY = {"size", "dim"}
_EXPAND_AS = {"expand_as"}
_EXPAND = {"expand", "expand_as"}
_MAX_MASK_NODES = 64


def _fixed(node: Any, gm: fx.GraphModule, seen: set[fx.Node]) -> bool:
    """``node`` depends only on network inputs, buffers, constants and tensor sizes."""
    ok = True

    def visit(a: fx.Node) -> None:
        nonlocal ok
        if ok and a not in seen:
            seen.add(a)
            ok = len(seen) <= _MAX_MASK_NODES and _fixed_node(a, gm, seen)

    fx.node.map_arg((node,) if isinstance(node, fx.Node) else node, visit)
    return ok


def _fixed_node(n: fx.Node, gm: fx.GraphModule, seen: set[fx.Node]) -> bool:
    if n.op == "placeholder":
        return True
    if n.op == "get_attr":  # a parameter under any of its names (tied ones have several)
        try:
            gm.get_parameter(str(n.target))
        except AttributeError:  # a buffer or a constant
            return True
        return False
    if n.op == "call_method" and n.target in _SHAPE_ONLY:
        return True
    if n.op == "call_method" and n.target in _EXPAND_AS:  # the other tensor: its shape only
        return len(n.args) == 2 and not n.kwargs and _fixed(n.args[0], gm, seen)
    if n.op == "call_function" and n.target is getattr:
        return n.args[1] in ("shape", "dtype", "device", "ndim")
    if n.op not in ("call_function", "call_method"):
        return False  # a module output, or anything else: never trusted as a mask
    return _fixed((n.args, n.kwargs), gm, seen)


def reads_shape_only(user: fx.Node, node: fx.Node) -> bool:
    """Whether ``user`` reads ``node`` only for its shape, dtype or device (``node.size()``,
    ``node.shape``, ``mask.expand_as(node)``): it sees none of ``node``'s values."""
    if user.op == "call_method" and user.target in _SHAPE_ONLY:
        return True
    if user.target is getattr:
        return user.args[1] in ("shape", "dtype", "device", "ndim")
    return (
        user.op == "call_method"
        and user.target in _EXPAND_AS
        and len(user.args) == 2
        and user.args[1] is node
        and user.args[0] is not node
    )


def fixed(node: Any, gm: fx.GraphModule) -> bool:
    """Whether a mask (or any argument) is independent of every parameter of the model.

    >>> from torch import nn
    >>> from symlab.frontend.tracer import Tracer
    >>> class M(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.lin = nn.Linear(2, 2)
    ...         self.register_buffer("keep", torch.ones(2))
    ...     def forward(self, x):
    ...         return self.lin(x) * (self.keep > 0), self.lin(x) > 0
    >>> m = M()
    >>> gm = fx.GraphModule(m, Tracer().trace(m))
    >>> [fixed(n, gm) for n in gm.graph.nodes if n.target is operator.gt]
    [True, False]
    """
    return _fixed(node, gm, set())


def _is_scores_add(node: fx.Node) -> bool:
    return node.target in _ADD and len(node.args) == 2 and not node.kwargs


def data_args(node: fx.Node, gm: fx.GraphModule) -> list[fx.Node] | None:
    """The data inputs of a node of one of these forms (None: not one of them). Masks and
    other operands must be fixed; raises ``_NoMatch`` otherwise."""
    t = node.target
    if node.op not in ("call_function", "call_method"):
        return None
    if t in _SPLIT or t in _UNBIND:
        _require(isinstance(node.args[0], fx.Node))
        return [node.args[0]]  # type: ignore[list-item]
    if t is operator.getitem and isinstance(node.args[0], fx.Node) and _is_tensor(node):
        return [node.args[0]]
    if t in _MASKED_FILL:
        _require(len(node.args) == 3 and not node.kwargs and fixed(node.args[1:], gm))
        return [node.args[0]]  # type: ignore[list-item]
    if t in _EINSUM:
        ops = node.args[1:]
        ops = ops[0] if len(ops) == 1 and isinstance(ops[0], list | tuple) else ops
        _require(isinstance(node.args[0], str) and not node.kwargs)
        _require(all(isinstance(a, fx.Node) for a in ops))
        return list(ops)  # type: ignore[arg-type]
    if t == F.scaled_dot_product_attention:
        _require(fixed(node.kwargs.get("attn_mask"), gm))
        return None  # q, k and v: read by the base matcher
    if _is_scores_add(node):
        a, b = node.args
        free = [x for x in (a, b) if not fixed(x, gm)]
        _require(len(free) == 1 and isinstance(free[0], fx.Node))
        return free  # type: ignore[return-value]
    return None


def _mask_ok(mask: Any, scores: _Val, st: _State | None = None) -> bool:
    """A fixed mask that is the same for every head: size 1 (or absent) on the head axis; or,
    given the matcher's state, one fixed bias per head (ALiBi: Press et al., "Train Short, Test
    Long", ICLR 2022), which makes the heads distinguishable (``st.head_bias``)."""
    if not isinstance(mask, fx.Node) or not _is_tensor(mask):
        return isinstance(mask, int | float | bool) or _shape_scalar(mask)
    while mask.op == "call_method" and mask.target in _EXPAND:
        src = mask.args[0]
        if not isinstance(src, fx.Node) or not _is_tensor(src):
            break
        mask = src  # expanding repeats a size-1 head axis: the same for every head
    shape = _shape(mask)
    head = scores.labels.index("H") - len(scores.labels)  # from the right
    if len(shape) < -head or shape[head] == 1:
        return True
    if st is not None and shape[head] == scores.shape[head]:
        st.head_bias = True  # heads told apart by their biases: never permuted
        return True
    return False


def per_token(factor: fx.Node, x: _Val) -> bool:
    """Whether the fixed tensor ``factor`` (checked by :func:`data_args`) multiplies ``x``
    by one number per token (or per query and key): size 1 on every axis of heads and head
    dimensions, so it commutes with every map of a head and is the same for all heads
    (Ministral-3's per-position scaling of the queries).

    >>> per_token(fx.Graph().placeholder("t"), _Val("proj", ("x", "h:0", "x", "d:0"), (2, 4, 7, 8)))
    False
    """
    if not _is_tensor(factor):
        return False
    shape = _shape(factor)
    if len(shape) > len(x.labels):
        return False
    return all(
        lab == "x" or size == 1
        for lab, size in zip(x.labels[len(x.labels) - len(shape) :], shape, strict=True)
    )


def step(node: fx.Node, st: _State) -> _Val | None:
    """The labels of ``node``'s output when it is one of these forms (None: not one)."""
    t = node.target
    if t in _SPLIT or t in _UNBIND:
        return _cut(node, st)
    if t is operator.getitem and node.args[0] in st.parts:
        return _select(node, st, node.args[0], int(node.args[1]))  # type: ignore[arg-type]
    if t is operator.getitem and isinstance(node.args[1], int):
        x = st.vals[node.args[0]]  # type: ignore[index]
        _require(x.kind == "fused" and x.labels[0] == "s")
        st.parts.setdefault(node.args[0], ("s", 0))  # type: ignore[arg-type]
        return _select(node, st, node.args[0], node.args[1])  # type: ignore[arg-type]
    if t in _MASKED_FILL or _is_scores_add(node):
        x = st.vals[next(a for a in node.args if a in st.vals)]  # type: ignore[misc]
        mask = [a for a in node.args if a not in st.vals]
        _require(x.kind == "scores" and all(_mask_ok(m, x, st) for m in mask))
        _require(_shape(node) == x.shape)
        return _Val("scores", x.labels, x.shape)
    if t in _EINSUM:
        return _einsum(node, st)
    if t in ("view", "reshape", "unflatten", torch.reshape) and node.args[0] in st.vals:
        x = st.vals[node.args[0]]  # type: ignore[index]
        shape = _shape(node)
        if x.kind == "proj" and x.labels[-1].startswith("f:") and len(shape) == len(x.shape) + 2:
            return _fuse(x, shape, st)
    return None


def masked_fill_value(node: fx.Node) -> float | None:
    """The fill value of a ``masked_fill`` node (None for other nodes or a traced value)."""
    if node.target not in _MASKED_FILL:
        return None
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value")
    return float(value) if isinstance(value, int | float) else float("nan")


def sdpa_mask(node: fx.Node, out: _Val, st: _State | None = None) -> None:
    """Check the ``attn_mask`` of a matched ``scaled_dot_product_attention``."""
    mask = node.kwargs.get("attn_mask")
    if mask is not None:
        labels = (*out.labels[:-1], "x")  # the scores: (..., H, queries, keys)
        _require(_mask_ok(mask, _Val("scores", labels, out.shape), st))


def _leaf(label: str) -> str:
    _require(label.startswith("f:") and "." not in label)  # one cut per fused Linear
    return label[2:]


def _fuse(x: _Val, shape: tuple[int, ...], st: _State) -> _Val:
    """``(..., S*H*D) -> (..., S, H, D)``: S blocks of H heads of D units, in that order."""
    j = _leaf(x.labels[-1])
    _require(shape[:-3] == x.shape[:-1] and shape[-3] * shape[-2] * shape[-1] == x.shape[-1])
    _require(st.split.setdefault(f"{j}.*", shape[-2:]) == shape[-2:])  # type: ignore[arg-type]
    return _Val("fused", (*x.labels[:-1], "s", f"y:{j}", f"z:{j}"), shape)


def _cut(node: fx.Node, st: _State) -> _Val:
    """``split``/``chunk`` of a projection's feature axis, or ``unbind`` of a selector axis."""
    x = st.vals[node.args[0]]  # type: ignore[index]
    extra = [*node.args[2:], *node.kwargs.values()]
    dim = extra[0] if extra else (0 if node.target in _UNBIND else None)
    _require(isinstance(dim, int) and len(extra) <= 1 and set(node.kwargs) <= {"dim"})
    dim %= len(x.labels)
    metas = node.meta.get("tensor_meta")
    _require(isinstance(metas, tuple | list) and all(hasattr(m, "shape") for m in metas))
    if node.target in _UNBIND:
        _require(x.kind == "fused" and x.labels[dim] == "s")
        st.parts[node] = ("s", dim)
        return x
    if node.target in _SPLIT and x.kind == "proj" and x.labels[dim].startswith("h:"):
        return _cut_heads(node, st, x, dim)  # (..., H, D) split on the heads (Falcon)
    if node.target in _SPLIT and x.kind == "proj" and x.labels[dim].startswith("d:"):
        return _cut_head_dims(node, st, x, dim)  # (..., H, 3D) split per head (GPT-NeoX)
    _require(node.target in _SPLIT and x.kind == "proj" and dim == len(x.labels) - 1)
    j = _leaf(x.labels[-1])
    sizes = [int(m.shape[-1]) for m in metas]  # type: ignore[union-attr]
    _require(sum(sizes) == x.shape[-1] and all(m.shape[:-1] == x.shape[:-1] for m in metas))  # type: ignore[union-attr]
    st.parts[node] = (j, tuple(sizes))
    return x


def _cut_heads(node: fx.Node, st: _State, x: _Val, dim: int) -> _Val:
    """``split`` of a fused projection already viewed as heads, on the head axis: each part is
    a block of whole heads, i.e. of consecutive rows of the Linear."""
    j = x.labels[dim][2:]
    _require("." not in j and x.labels[-1] == f"d:{j}" and dim == len(x.labels) - 2)
    metas = node.meta.get("tensor_meta")
    _require(isinstance(metas, tuple | list) and all(hasattr(m, "shape") for m in metas))
    sizes = tuple(int(m.shape[dim]) for m in metas)  # type: ignore[union-attr]
    _require(sum(sizes) == x.shape[dim])
    st.parts[node] = (f"{j}#h", (sizes, x.shape[-1]))
    return x


def _cut_head_dims(node: fx.Node, st: _State, x: _Val, dim: int) -> _Val:
    """``split``/``chunk`` of a fused projection viewed as heads, on the head dimension: each
    head's rows hold its query, key and value rows in turn (GPT-NeoX's ``query_key_value``:
    ``view(B, T, H, 3 * D)``, then ``chunk(3, dim=-1)``), so part ``i`` takes rows
    ``h·S + o_i … h·S + o_i + s_i`` of every head ``h``: the rows of a fused Linear, laid out
    head by head instead of part by part."""
    j = x.labels[dim][2:]
    _require("." not in j and dim == len(x.labels) - 1 and f"h:{j}" in x.labels)
    metas = node.meta.get("tensor_meta")
    _require(isinstance(metas, tuple | list) and all(hasattr(m, "shape") for m in metas))
    sizes = tuple(int(m.shape[-1]) for m in metas)  # type: ignore[union-attr]
    _require(sum(sizes) == x.shape[-1] and len(sizes) > 1)
    heads = x.shape[x.labels.index(f"h:{j}")]
    _require(st.split.get(j) == (heads, x.shape[-1]) and j not in st.by_head)
    st.by_head[j] = (heads, sizes)
    st.parts[node] = (f"{j}#d", (sizes, heads))
    return x


def _select(node: fx.Node, st: _State, src: fx.Node, i: int) -> _Val:
    x, (how, arg) = st.vals[src], st.parts[src]
    shape = _shape(node)
    if how.endswith("#d"):  # one part of every head's rows (rows counted part by part)
        j, (sizes, heads) = how[:-2], arg
        _require(0 <= i < len(sizes))
        role = f"{j}.{i}"
        st.rows[role] = (j, heads * sum(sizes[:i]), heads * sizes[i])
        st.split[role] = (heads, sizes[i])
        labels = [f"h:{role}" if lab == f"h:{j}" else f"d:{role}" if lab == f"d:{j}" else lab
                  for lab in x.labels]  # fmt: skip
        return _Val("proj", tuple(labels), shape)
    if how.endswith("#h"):  # a block of heads of a fused projection
        j, (sizes, d) = how[:-2], arg
        _require(0 <= i < len(sizes))
        role = f"{j}.{i}"
        st.rows[role] = (j, sum(sizes[:i]) * d, sizes[i] * d)
        st.split[role] = (sizes[i], d)
        labels = [f"h:{role}" if lab == f"h:{j}" else f"d:{role}" if lab == f"d:{j}" else lab
                  for lab in x.labels]  # fmt: skip
        return _Val("proj", tuple(labels), shape)
    if how == "s":  # select block i on the selector axis (unbind or x[i])
        dim = int(arg)
        _require(0 <= i < x.shape[dim])
        j = next(lab[2:] for lab in x.labels if lab.startswith("y:"))
        role = f"{j}.{i}"
        hd = st.split[f"{j}.*"]
        labels = [lab for k, lab in enumerate(x.labels) if k != dim]
        _require(labels.count(f"y:{j}") == 1 and labels.count(f"z:{j}") == 1)
        labels = [f"h:{role}" if lab[0] == "y" else f"d:{role}" if lab[0] == "z" else lab
                  for lab in labels]  # fmt: skip
        _require(all(lab == "x" or lab[1] == ":" for lab in labels))
        st.split[role] = hd
        st.rows[role] = (j, i * hd[0] * hd[1], hd[0] * hd[1])
        return _Val("proj", tuple(labels), shape)
    sizes = arg
    _require(0 <= i < len(sizes))  # type: ignore[arg-type]
    role = f"{how}.{i}"
    st.rows[role] = (how, sum(sizes[:i]), sizes[i])  # type: ignore[index]
    return _Val("proj", (*x.labels[:-1], f"f:{role}"), shape)


def _einsum(node: fx.Node, st: _State) -> _Val:
    eq = str(node.args[0]).replace(" ", "")
    ops = node.args[1:]
    ops = ops[0] if len(ops) == 1 and isinstance(ops[0], list | tuple) else ops
    _require(len(ops) == 2 and eq.count("->") == 1 and eq.count(",") == 1)
    a, b = (st.vals[n] for n in ops)  # type: ignore[index]
    lhs, out = eq.split("->")
    sa, sb = lhs.split(",")
    for s, v in ((sa, a), (sb, b), (out, None)):
        _require(s.isalpha() and len(set(s)) == len(s) and (v is None or len(s) == len(v.labels)))
    _require(set(out) <= set(sa) | set(sb))
    la, lb = dict(zip(sa, a.labels, strict=True)), dict(zip(sb, b.labels, strict=True))
    summed = (set(sa) | set(sb)) - set(out)

    def only(lab: dict[str, str], prefix: str) -> str:
        hits = [c for c, v in lab.items() if v.startswith(prefix)]
        _require(len(hits) == 1)
        return hits[0]

    if a.kind == "proj" and b.kind == "proj":  # scores: q_h · k_h over the head dimension
        _require(st.qk is None)
        d, h = only(la, "d:"), only(la, "h:")
        _require(d == only(lb, "d:") and h == only(lb, "h:") and summed == {d} and h in out)
        i, j = la[d][2:], lb[d][2:]
        _require(i != j and la[h] == f"h:{i}" and lb[h] == f"h:{j}")
        _require(all(v == "x" for c, v in [*la.items(), *lb.items()] if c not in (d, h)))
        st.qk = (i, j)
        return _Val("scores", tuple("H" if c == h else "x" for c in out), _shape(node))
    # values: the scores of head h weigh the tokens of v_h; v's head dimension is kept
    _require(a.kind == "scores" and b.kind == "proj" and st.v is None and st.qk is not None)
    d, h = only(lb, "d:"), only(lb, "h:")
    i = lb[d][2:]
    _require(la.get(h) == "H" and lb[h] == f"h:{i}" and i not in st.qk and d in out and h in out)
    _require(d not in la and summed and all(la[c] == lb[c] == "x" for c in summed if c in la))
    _require(all(c in la and c in lb for c in summed))
    _require(all(v == "x" for c, v in [*la.items(), *lb.items()] if c not in (d, h)))
    st.v = i
    labels = tuple("H" if c == h else f"d:{i}" if c == d else "x" for c in out)
    return _Val("out", labels, _shape(node))


def settle_masks(matches: dict[fx.Node, AttentionMatch], skip: set[fx.Node]) -> set[fx.Node]:
    """Hand each block the mask nodes read only by matched blocks (they leave the graph with
    it: a fixed mask carries no symmetry), adding them to ``skip``. Returns the blocks whose
    mask reads a buffer that something else reads too (the group might move that buffer)."""
    if not matches:
        return set()
    nodes = list(next(iter(matches)).graph.nodes)
    order = {n: i for i, n in enumerate(nodes)}
    cand = set().union(*(m.masks for m in matches.values()))
    gone: set[fx.Node] = set()
    for n in sorted(cand, key=order.__getitem__, reverse=True):
        if n.op != "placeholder" and all(u in skip or u in gone for u in n.users):
            gone.add(n)
    # a buffer read elsewhere as well (or owned by a layer, such as a BatchNorm's statistics)
    # may be moved with its channel there: not a fixed mask
    kept = {n.target for n in nodes if n.op == "get_attr" and n not in gone}
    layers = {str(n.target) for n in nodes if n.op == "call_module"}
    mine = [n for n in cand if n.op == "get_attr"]
    kept |= {n.target for n in mine if str(n.target).rpartition(".")[0] in layers}
    bad = {o for o, m in matches.items() if any(n.target in kept for n in m.masks & set(mine))}
    for o, m in matches.items():
        matches[o] = replace(m, masks=m.masks & gone)
        gone -= m.masks
        skip |= m.masks
    return bad


def mask_nodes(interior: set[fx.Node], gm: fx.GraphModule) -> frozenset[fx.Node]:
    """Every node the masks of a block read (all fixed, as :func:`data_args` checked)."""
    found: set[fx.Node] = set()
    for n in interior:
        if n.target in _MASKED_FILL:
            masks = list(n.args[1:])
        elif n.target == F.scaled_dot_product_attention:
            masks = [n.kwargs.get("attn_mask")]
        elif _is_scores_add(n):
            masks = [a for a in n.args if a not in interior]
        elif n.target in _SCALE and any(a in interior for a in n.args):
            masks = [a for a in n.args if isinstance(a, fx.Node) and _is_tensor(a)
                     and a not in interior]  # fmt: skip
        else:
            continue
        for a in masks:
            if isinstance(a, fx.Node):
                _fixed(a, gm, found)
    return frozenset(found - interior)
