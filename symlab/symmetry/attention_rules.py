"""Multi-head attention: head permutations and per-head GL(d_head) on (W_Q, W_K), (W_V, W_O).

For head ``h`` with queries ``q_h = W_Q^h x`` and keys ``k_h = W_K^h x``, the scores
``q_hᵀ k_h`` are unchanged by ``q_h ↦ M_h q_h``, ``k_h ↦ M_h^{-T} k_h``; values
``v_h ↦ N_h v_h`` are undone by ``W_O^h ↦ W_O^h N_h^{-1}``; heads can be permuted jointly.
The inputs and the output of the block admit any invertible map (the projections are linear).
Biases of the projections move with their rows. The key bias is free (it adds ``q·b_K`` to
every score of a query, which the softmax over keys ignores): a translation factor
(:mod:`symlab.symmetry.shift_rules`). With normalised queries or keys (QK-norm) the maps of
queries and keys are gone and a norm weight over all heads moves with its head blocks
(:mod:`symlab.symmetry.rope_rules`). A fused Linear whose rows are laid out head by head
(GPT-NeoX: each head's query, key and value rows in turn, ``attrs['by_head']``) is acted on
part by part and put back. See docs/concepts/symmetries.md.
"""

from __future__ import annotations

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.rope_rules import attention_internal, head_maps
from symlab.symmetry.rules import rule
from symlab.symmetry.shift_rules import key_bias_translation
from symlab.symmetry.spec import ANY, OpSymmetry
from symlab.symmetry.transform import Transform

Params = dict[str, torch.Tensor]


@rule("mha")
def mha_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``nn.MultiheadAttention`` with packed ``in_proj_weight`` (its key bias is always weighted
    by a softmax over keys)."""
    h = int(node.attrs["num_heads"])
    d = int(node.width) // h
    return _attention_spec(node, graph, d, d, ("in_proj_bias", h * d, h * d))


def _attention_spec(
    node: Node, graph: ArchGraph, d_qk: int, d_v: int, key_bias: tuple[str, int, int] | None
) -> OpSymmetry:
    """What every attention op admits: any invertible map of its inputs and output, head
    permutations, per-head GL on (W_Q, W_K) and on (W_V, W_O); and, when the op has the key
    bias ``key_bias = (parameter, first row, rows)``, that bias as a translation."""
    ins = graph.inputs(node.name)
    translations = []
    if key_bias is not None and any(p.name == key_bias[0] for p in node.params):
        translations.append(key_bias_translation(node, *key_bias))
    return OpSymmetry(
        admits=[*[(x, ANY, "attention input") for x in ins], (node.name, ANY, "attention out")],
        internal=attention_internal(node, d_qk, d_v),  # heads, groups, RoPE: rope_rules
        translations=translations,
    )


def _transposed(node: Node, params: Params) -> Params:
    """``params`` with the weights of ``attrs['transposed']`` modules (GPT-2's ``Conv1D``,
    stored ``(in, out)``) transposed to ``nn.Linear``'s ``(out, in)``, or back."""
    mods = node.attrs.get("transposed", ())
    if not mods:
        return params
    return {k: (v.T.contiguous() if k.removesuffix(".weight") in mods and k.endswith(".weight")
                else v) for k, v in params.items()}  # fmt: skip


def _move_norms(
    node: Node,
    params: Params,
    out: dict[str, torch.Tensor],
    q_perm: torch.Tensor | None,
    kv_perm: torch.Tensor | None,
) -> None:
    """A QK-norm over all heads (``attrs['qk_norm']``, scope ``full``) has one weight entry per
    row of its projection: it moves with the rows, head block by head block. A norm over each
    head's dimensions has one weight for every head: it stays."""
    hq = int(node.attrs["num_heads"])
    hkv = int(node.attrs.get("num_kv_heads", hq))
    for role, scope, keys in node.attrs.get("qk_norm", ()):
        perm, h = (q_perm, hq) if role == "q" else (kv_perm, hkv)
        if scope == "full" and perm is not None:
            for key in keys:
                out[key] = _map_rows(params[key], perm, None, h)


def _part_major(heads: int, sizes: tuple[int, ...]) -> torch.Tensor:
    """The rows of a fused Linear laid out head by head (head ``h`` holds parts of ``sizes``
    rows in turn: GPT-NeoX's ``query_key_value``), listed part by part.

    >>> _part_major(2, (1, 2)).tolist()
    [0, 3, 1, 2, 4, 5]
    """
    stride, out, off = sum(sizes), [], 0
    for n in sizes:
        out.append((torch.arange(heads)[:, None] * stride + off + torch.arange(n)).reshape(-1))
        off += n
    return torch.cat(out)


def _placed(rows: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
    """``rows`` (part by part) back in the Linear's own order (:func:`_part_major`)."""
    if order is None:
        return rows
    back = torch.empty_like(rows)
    back[order] = rows
    return back


def _heads(m: torch.Tensor, h: int) -> torch.Tensor:
    return m.reshape(h, m.shape[0] // h, *m.shape[1:])


def _map_rows(
    w: torch.Tensor, perm: torch.Tensor | None, mats: torch.Tensor | None, h: int
) -> torch.Tensor:
    blocks = _heads(w, h)
    if perm is not None:
        blocks = blocks[perm]
    if mats is not None:
        m = mats.to(w.dtype)
        blocks = torch.einsum("hij,hj...->hi...", m, blocks)
    return blocks.reshape(w.shape)


@mha_rule.action
def _mha_act(
    node: Node,
    params: Params,
    t_in: list[Transform],
    t_out: Transform,
    internal: dict[str, torch.Tensor],
) -> Params:
    h = int(node.attrs["num_heads"])
    qkv = node.attrs.get("qkv", (0, 0, 0))
    perm = internal.get("heads")
    mq = internal.get("qk")
    mv = internal.get("vo")
    mk = None if mq is None else torch.linalg.inv(mq).transpose(-1, -2)
    w = params["in_proj_weight"]
    e = w.shape[0] // 3
    parts, biases = [], []
    b = params.get("in_proj_bias")
    for i, mats in enumerate((mq, mk, mv)):
        wi = t_in[qkv[i]].contract(w[i * e : (i + 1) * e], 1)
        parts.append(_map_rows(wi, perm, mats, h))
        if b is not None:
            biases.append(_map_rows(b[i * e : (i + 1) * e], perm, mats, h))
    out = dict(params, in_proj_weight=torch.cat(parts))
    if b is not None:
        out["in_proj_bias"] = torch.cat(biases)
    out["out_proj.weight"] = t_out.out(_map_cols(params["out_proj.weight"], perm, mv, h), 0)
    if "out_proj.bias" in params:
        out["out_proj.bias"] = t_out.out(params["out_proj.bias"], 0)
    return out


def _map_cols(
    wo: torch.Tensor, perm: torch.Tensor | None, mv: torch.Tensor | None, h: int
) -> torch.Tensor:
    """``W_O``'s columns, head by head: permuted, then ``W_O^h ↦ W_O^h N_h^{-1}``."""
    cols = _heads(wo.T, h)  # (h, d, E_out)
    if perm is not None:
        cols = cols[perm]
    if mv is not None:
        cols = torch.einsum("hij,hi...->hj...", torch.linalg.inv(mv).to(wo.dtype), cols)
    return cols.reshape(wo.T.shape).T


@rule("attention_linear")
def attention_linear_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Attention written by hand from four ``nn.Linear`` (matched by
    :mod:`symlab.frontend.patterns.attention`): the same symmetries as ``mha``, with head dimension
    ``head_dim`` for queries/keys and ``head_dim_v`` for values/output; the key bias is free
    when the matcher saw the values weighted by a softmax over keys (``softmax_keys``)."""
    h, d = int(node.attrs["num_heads"]), int(node.attrs["head_dim"])
    hkv = int(node.attrs.get("num_kv_heads", h))  # the keys' rows: one block per key head
    key_bias = (f"{node.attrs['modules'][1]}.bias", 0, hkv * d)
    soft = node.attrs.get("softmax_keys", False)
    return _attention_spec(
        node, graph, d, int(node.attrs["head_dim_v"]), key_bias if soft else None
    )


@attention_linear_rule.action
def _attention_linear_act(
    node: Node,
    params: Params,
    t_in: list[Transform],
    t_out: Transform,
    internal: dict[str, torch.Tensor],
) -> Params:
    q, k, v, o = node.attrs["modules"]
    params = _transposed(node, params)
    hm = head_maps(node, internal, int(node.attrs["head_dim"]))
    hq = int(node.attrs["num_heads"])
    hkv = int(node.attrs.get("num_kv_heads", hq))
    out = dict(params)
    for mod, mats, port, perm, h in zip(
        (q, k, v), (hm.mq, hm.mk, hm.mv), node.attrs["qkv"], (hm.q_perm, hm.kv_perm, hm.kv_perm),
        (hq, hkv, hkv), strict=True,
    ):  # fmt: skip
        w = t_in[port].contract(params[f"{mod}.weight"], 1)
        out[f"{mod}.weight"] = _map_rows(w, perm, mats, h)
        if f"{mod}.bias" in params:
            out[f"{mod}.bias"] = _map_rows(params[f"{mod}.bias"], perm, mats, h)
    out[f"{o}.weight"] = t_out.out(_map_cols(params[f"{o}.weight"], hm.q_perm, hm.mo, hq), 0)
    if f"{o}.bias" in params:
        out[f"{o}.bias"] = t_out.out(params[f"{o}.bias"], 0)
    _move_norms(node, params, out, hm.q_perm, hm.kv_perm)
    return _transposed(node, out)


@rule("attention_fused")
def attention_fused_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Attention whose projections are row blocks cut from fused ``nn.Linear`` (nanoGPT's
    ``c_attn(x).split(E, dim=2)``, timm's ``qkv(x).reshape(B, N, 3, H, D)``; matched by
    :mod:`symlab.frontend.patterns.attention_forms`): the symmetries of ``attention_linear``,
    acting on the rows ``roles`` names for queries, keys and values (the layout of
    ``nn.MultiheadAttention``'s ``in_proj_weight`` when one Linear holds all three)."""
    leaf, offset, size = node.attrs["roles"][1]
    key_bias = (f"{node.attrs['modules'][leaf]}.bias", offset, size)
    soft = node.attrs.get("softmax_keys", False)
    d_qk, d_v = int(node.attrs["head_dim"]), int(node.attrs["head_dim_v"])
    return _attention_spec(node, graph, d_qk, d_v, key_bias if soft else None)


@attention_fused_rule.action
def _attention_fused_act(
    node: Node,
    params: Params,
    t_in: list[Transform],
    t_out: Transform,
    internal: dict[str, torch.Tensor],
) -> Params:
    *projs, o = node.attrs["modules"]
    params = _transposed(node, params)
    hm = head_maps(node, internal, int(node.attrs["head_dim"]))
    hq = int(node.attrs["num_heads"])
    hkv = int(node.attrs.get("num_kv_heads", hq))
    roles = zip((hm.mq, hm.mk, hm.mv), (hm.q_perm, hm.kv_perm, hm.kv_perm), (hq, hkv, hkv),
                strict=True)  # fmt: skip
    maps = list(roles)
    out = dict(params)
    by_head = {j: _part_major(h, sizes) for j, h, sizes in node.attrs.get("by_head", ())}
    for j, (mod, port) in enumerate(zip(projs, node.attrs["ports"], strict=True)):
        w = t_in[port].contract(params[f"{mod}.weight"], 1)
        b = params.get(f"{mod}.bias")
        order = by_head.get(j)
        if order is not None:  # rows head by head: act on them part by part, then back
            w, b = w[order], (None if b is None else b[order])
        blocks = sorted(
            (
                (off, size, *mp)
                for (leaf, off, size), mp in zip(node.attrs["roles"], maps, strict=True)
                if leaf == j
            ),
            key=lambda r: r[0],
        )  # the roles tile the rows of each fused Linear (the matcher proved it)
        out[f"{mod}.weight"] = _placed(
            torch.cat([_map_rows(w[a : a + n], p, m, h) for a, n, m, p, h in blocks]), order
        )
        if b is not None:
            out[f"{mod}.bias"] = _placed(
                torch.cat([_map_rows(b[a : a + n], p, m, h) for a, n, m, p, h in blocks]), order
            )
    out[f"{o}.weight"] = t_out.out(_map_cols(params[f"{o}.weight"], hm.q_perm, hm.mo, hq), 0)
    if f"{o}.bias" in params:
        out[f"{o}.bias"] = t_out.out(params[f"{o}.bias"], 0)
    _move_norms(node, params, out, hm.q_perm, hm.kv_perm)
    return _transposed(node, out)
