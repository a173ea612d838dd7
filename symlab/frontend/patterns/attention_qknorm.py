"""Normalised queries and keys (QK-norm) and soft-capped scores, for the attention matcher.

**QK-norm** (Henry et al., "Query-Key Normalization for Transformers", Findings of EMNLP 2020;
Dehghani et al., "Scaling Vision Transformers to 22 Billion Parameters", ICML 2023) normalises
the queries and keys before the scores. Real code does it two ways::

    q = self.q_norm(self.q_proj(x).view(B, T, H, D))    # over each head (Qwen3, Gemma-3,
                                                        # EXAONE-4): one weight of D entries,
                                                        # the same for every head
    q = self.q_norm(self.q_proj(x)).view(B, T, H, D)    # over all heads (OLMo-2): one weight
                                                        # entry per row of the projection

with an RMSNorm or LayerNorm written by hand (:mod:`.norm` proves it) or an ``nn.RMSNorm`` /
``nn.LayerNorm`` module running its class's forward. What the block keeps: head permutations
(the statistic of a head's own dimensions, or of all rows, does not change when whole heads
trade places; a weight over all heads moves with its rows, head block by head block), the
grouped-query structure and GL on the values and the output. What it loses: the maps of the
queries and keys (a norm commutes only with the maps that preserve its statistic and its
weight, so GL and RoPE's complex scalings are gone; the sign flips of a rotary pair of a head's
queries and keys together, which an RMSNorm commutes with, are not derived), and the freedom
of the key bias (it is normalised with the key). A norm on the values, or on a fused
projection before it is cut into queries, keys and values, is not matched (the ops are read
one by one).

**Soft-capped scores** (Gemma-2: ``tanh(scores / c) · c``): a fixed function applied to every
score alike keeps every symmetry the scores have (head permutations permute it with them, the
maps of queries and keys leave each score unchanged), but it is not a shift of a query's scores,
so before the softmax it ends the freedom of the key bias.
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from symlab.frontend.fxutil import module_calls
from symlab.frontend.modules import reading
from symlab.frontend.patterns.attention_base import _require, _shape, _State, _Val
from symlab.frontend.patterns.norm import find_norms

__all__ = ["SCORE_FUNCTIONS", "NormSite", "norm_sites", "norm_step", "score_function_step"]

#: elementwise fixed functions allowed on the scores (Gemma-2's soft cap)
SCORE_FUNCTIONS = {torch.tanh, "tanh", torch.ops.aten.tanh.default}

_CACHE: weakref.WeakKeyDictionary[fx.GraphModule, tuple[int, dict[fx.Node, NormSite]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class NormSite:
    """One normalisation over the last axis of ``x``: its output, ``kind`` (``rmsnorm`` or
    ``layernorm``), the state_dict keys of its weight and bias, the normalised width, the nodes
    inside it (not stepped by the matcher) and the module called, for the module form."""

    x: fx.Node
    out: fx.Node
    kind: str
    params: tuple[str, ...]
    width: int
    inner: frozenset[fx.Node]
    module: str | None = None


def _module_site(n: fx.Node, gm: fx.GraphModule, calls: Counter[str]) -> NormSite | None:
    """An ``nn.LayerNorm`` / ``nn.RMSNorm`` call over one (the last) axis, called once."""
    if n.op != "call_module" or calls.get(str(n.target), 0) != 1:
        return None
    mod = gm.get_submodule(str(n.target))
    entry = reading(mod)
    if entry is None or entry.module_type not in (nn.LayerNorm, nn.RMSNorm):
        return None
    shape = tuple(mod.normalized_shape)  # type: ignore[arg-type]
    if len(shape) != 1 or len(n.args) != 1 or n.kwargs or not isinstance(n.args[0], fx.Node):
        return None
    kind = "layernorm" if entry.module_type is nn.LayerNorm else "rmsnorm"
    keys = tuple(f"{n.target}.{p}" for p in ("weight", "bias") if getattr(mod, p, None) is not None)
    return NormSite(n.args[0], n, kind, keys, int(shape[0]), frozenset(), str(n.target))


def norm_sites(gm: fx.GraphModule) -> dict[fx.Node, NormSite]:
    """Every normalisation over the last axis in ``gm`` that a block may contain, keyed by its
    output node (cached per graph): the hand-written ones :func:`.norm.find_norms` proves, whose
    parameters no other node reads, and the module calls.

    >>> class Block(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.q, self.norm = nn.Linear(8, 8), nn.RMSNorm(4)
    ...     def forward(self, x):
    ...         return self.norm(self.q(x).view(2, 3, 2, 4))
    >>> from torch.fx.passes.shape_prop import ShapeProp
    >>> gm = fx.symbolic_trace(Block())
    >>> _ = ShapeProp(gm).propagate(torch.randn(2, 3, 8))
    >>> [(s.kind, s.params, s.width) for s in norm_sites(gm).values()]
    [('rmsnorm', ('norm.weight',), 4)]
    """
    n_nodes = len(gm.graph.nodes)
    hit = _CACHE.get(gm)
    if hit is not None and hit[0] == n_nodes:
        return hit[1]
    sites: dict[fx.Node, NormSite] = {}
    found, _ = find_norms(gm)
    for out, m in found.items():
        keys = tuple(k for k in (m.weight, m.bias) if k is not None)
        reads = {str(n.target) for n in m.nodes if n.op == "get_attr"}
        if not set(keys) <= reads:  # a parameter read elsewhere too: not the block's own
            continue
        shape = getattr(m.x.meta.get("tensor_meta"), "shape", None)
        if not shape or m.x in m.nodes:
            continue
        sites[out] = NormSite(m.x, out, m.kind, keys, int(shape[-1]), m.nodes)
    calls = module_calls(gm)
    for n in gm.graph.nodes:
        site = _module_site(n, gm, calls)
        if site is not None:
            sites[n] = site
    _CACHE[gm] = (n_nodes, sites)
    return sites


def norm_step(node: fx.Node, st: _State, site: NormSite) -> _Val:
    """Labels after a norm of a projection: those of its input. The norm covers one head's
    dimensions (``d:i``, scope ``head``) or the whole projection before its heads are split off
    (``f:i``, scope ``full``); recorded per projection, checked by the matcher at the end (it
    must be the queries' or the keys')."""
    x = st.vals[site.x]
    _require(x.kind == "proj" and _shape(node) == x.shape and site.width == x.shape[-1])
    lab = x.labels[-1]
    _require(lab[:2] in ("d:", "f:"))
    i = lab[2:]
    _require(i not in st.norms)
    st.norms[i] = (site, "head" if lab[0] == "d" else "full")
    return _Val("proj", x.labels, x.shape)


def score_function_step(node: fx.Node, st: _State) -> _Val | None:
    """Labels after a fixed elementwise function of the scores (:data:`SCORE_FUNCTIONS`);
    None for other nodes. Before the softmax it ends the key bias's freedom."""
    if node.op not in ("call_function", "call_method") or node.target not in SCORE_FUNCTIONS:
        return None
    src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
    if src not in st.vals:
        return None
    x = st.vals[src]  # type: ignore[index]
    _require(x.kind == "scores" and _shape(node) == x.shape)
    if src not in st.soft:  # not yet weighted by the softmax: a shift no longer cancels
        st.shift_kept = False
    return _Val("scores", x.labels, x.shape)
