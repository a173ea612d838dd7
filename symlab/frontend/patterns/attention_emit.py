"""Graph nodes for the attention blocks matched by :mod:`symlab.frontend.patterns.attention`.

Three whole ``nn.Linear`` projections become an ``attention_linear`` node; projections cut
from fused Linears (:mod:`.attention_forms`) become an ``attention_fused`` node
whose ``roles`` attribute names, for queries, keys and values, the Linear (an index into
``modules``) and its rows. The buffers read by a block's masks are declared on its node as
fixed data (never moved); the weights and biases of a norm of the queries or keys
(:mod:`.attention_qknorm`) are parameters of the node, listed in its ``qk_norm`` attribute.
Rules: :mod:`symlab.symmetry.attention_rules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.fx as fx

from symlab.errors import UnsupportedOpError
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter
    from symlab.frontend.patterns.attention_base import AttentionMatch

__all__ = ["block_name", "emit", "mask_specs"]


def _key(cv: Converter, target: str) -> str:
    return target if cv.strip is None else target.removeprefix(cv.strip).removeprefix(".")


def _claim(cv: Converter, module: str) -> None:
    """Mark ``module`` as read by this block; refused when another node read it already."""
    if module in cv.used_modules:
        raise UnsupportedOpError(f"module {module!r} is called more than once (weight sharing)")
    cv.used_modules.add(module)


def block_name(cv: Converter, targets: list[str], o: fx.Node) -> str:
    """The graph name of a block: its modules' enclosing module, else its output Linear."""
    parts = [t.split(".") for t in targets]
    common = []
    for seg in zip(*parts, strict=False):
        if len(set(seg)) != 1:
            break
        common.append(seg[0])
    name = ".".join(common[: min(len(p) for p in parts) - 1])
    if not name or name in cv.g.nx:  # no enclosing module: named after the output Linear
        name = targets[-1] if targets[-1] not in cv.g.nx else f"@{o.name}"
    return name


def mask_specs(cv: Converter, m: AttentionMatch) -> list[ParamSpec]:
    """The buffers read by the block's masks, declared as fixed data of its node (never
    moved; they stay in the model's ``state_dict``)."""
    buffers = [n for n in m.masks if n.op == "get_attr"]
    if not buffers:
        return []
    state = cv.model.state_dict()
    order = {n: i for i, n in enumerate(cv.gm.graph.nodes)}
    specs = []
    for n in sorted(buffers, key=order.__getitem__):
        if str(n.target) in state:
            shape = tuple(state[str(n.target)].shape)
            key = _key(cv, str(n.target))
            specs.append(ParamSpec(key, shape, ("none",) * len(shape), "fixed"))
    return specs


def emit(cv: Converter, m: AttentionMatch) -> str:
    """Add the ``attention_linear`` (or ``attention_fused``) node of ``m`` to the graph."""
    leaves = [m.q, m.k, m.v] if m.rows is None else list(dict.fromkeys(r[0] for r in m.rows))
    projs = dict(m.projs)  # GPT-2's Conv1D projections: weights stored (in, out)
    targets = []
    for n in (*leaves, m.o):
        t = projs[n].prefix if n in projs else _key(cv, str(n.target))
        _claim(cv, t)
        targets.append(t)
    srcs = [cv.name[projs[n].match.x if n in projs else n.args[0]] for n in leaves]  # type: ignore[index]
    ins = list(dict.fromkeys(srcs))
    for s in ins:
        if cv.fa[s] != len(cv.shape[s]) - 1:
            raise UnsupportedOpError(f"attention projections read {s!r} off its feature axis")
    ports = tuple(ins.index(s) for s in srcs)
    params = []
    for t, n, port in zip(targets, (*leaves, m.o), (*ports, None), strict=True):
        mod = projs[n] if n in projs else cv.gm.get_submodule(str(n.target))
        rows, cols = int(mod.out_features), int(mod.in_features)
        axes = ("out", "none") if port is None else ("none", "in" if port == 0 else "none")
        if n in projs:  # stored transposed: (in, out)
            params.append(ParamSpec(f"{t}.weight", (cols, rows), axes[::-1]))
        else:
            params.append(ParamSpec(f"{t}.weight", (rows, cols), axes))
        if mod.bias is not None and mod.bias is not False:
            params.append(ParamSpec(f"{t}.bias", (rows,), ("out" if port is None else "none",)))
    name = block_name(cv, targets, m.o)
    shape = cv.meta_shape(m.o) or (*cv.shape[ins[0]][:-1], int(params[-1].shape[0]))
    params += mask_specs(cv, m)
    normed = []
    for role, site, scope in m.norms:  # QK-norm: its weight moves only with whole heads
        if site.module is not None:
            _claim(cv, site.module)
        keys = tuple(_key(cv, k) for k in site.params)
        params += [ParamSpec(k, (site.width,), ("none",)) for k in keys]
        normed.append((role, scope, keys))
    heads = {"num_heads": m.num_heads, "head_dim": m.head_dim, "head_dim_v": m.head_dim_v,
             "softmax_keys": m.softmax_keys}  # fmt: skip
    if m.num_kv_heads and m.num_kv_heads != m.num_heads:  # grouped-query attention
        heads["num_kv_heads"] = m.num_kv_heads
    if m.rope is not None:  # rotary embedding: (layout, rotated dimensions)
        heads["rope_layout"], heads["rope_dims"] = m.rope
    if m.head_bias:  # ALiBi: every head has its own fixed bias, so heads stay in place
        heads["head_bias"] = True
    if normed:  # QK-norm: ((role, "head" | "full", parameter keys), ...)
        heads["qk_norm"] = tuple(normed)
    if projs:  # the modules whose weights are stored transposed
        heads["transposed"] = tuple(projs[n].prefix for n in (*leaves, m.o) if n in projs)
    if m.rows is None:
        cv.add_node(name, "attention_linear", ins, shape, -1, params, absolute_keys=True,
                    qkv=ports, modules=tuple(targets), **heads)  # fmt: skip
    else:
        roles = tuple((leaves.index(n), off, size) for n, off, size in m.rows)
        if m.by_head:  # ((Linear index, heads, part sizes), ...): rows laid out head by head
            heads["by_head"] = tuple((leaves.index(n), h, sizes) for n, h, sizes in m.by_head)
        cv.add_node(name, "attention_fused", ins, shape, -1, params, absolute_keys=True,
                    ports=ports, roles=roles, modules=tuple(targets), **heads)  # fmt: skip
    cv.name[m.o] = name
    return name
