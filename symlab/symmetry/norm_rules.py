"""RMSNorm / LayerNorm whose weight is read as ``c + w`` (Gemma's ``(1 + weight)``).

``y = n(x) ⊙ (c + w) (+ b)`` with ``n`` the normalisation (Zhang & Sennrich, "Root Mean Square
Layer Normalization", NeurIPS 2019; Ba et al., "Layer Normalization", 2016). The symmetries are
those of the plain norm, whose effective weight is ``w_eff = c + w``: a common scale of the input
is divided out (up to ``eps``), a common sign of the input and a per-unit scale/sign ``D`` of the
output are absorbed by ``w_eff ↦ D P w_eff`` (and ``b ↦ D P b``). On the stored parameter that is
the *affine* map ``w ↦ D P (c + w) − c``, not a scaling of ``w``: ``w = 0`` (the identity norm)
is not fixed, it moves to ``d − c``. Every scale survives; what does not is reading the action
as linear in ``w`` (composition and inverses still hold: the maps compose as the ``D`` do).
"""

from __future__ import annotations

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.builtin_rules import layernorm_rule, rmsnorm_rule
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import OpSymmetry
from symlab.symmetry.transform import Transform

Params = dict[str, torch.Tensor]

__all__ = ["layernorm_offset_rule", "rmsnorm_offset_rule"]


@rule("rmsnorm_offset")
def rmsnorm_offset_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """RMSNorm with weight ``c + w`` (``attrs['offset'] = c``): the symmetries of ``rmsnorm``,
    acting affinely on ``w``.

    >>> import torch, symlab as sl
    >>> from torch import nn
    >>> class GemmaNorm(nn.Module):
    ...     def __init__(self, d):
    ...         super().__init__()
    ...         self.weight = nn.Parameter(torch.zeros(d))
    ...     def forward(self, x):
    ...         y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    ...         return y * (1.0 + self.weight)
    >>> net = nn.Sequential(nn.Linear(3, 4), GemmaNorm(4), nn.Linear(4, 2))
    >>> G = sl.symmetries(net, torch.randn(5, 3))
    >>> [n.op for n in G.graph.nodes()][2], [f.short() for f in G.factors]
    ('rmsnorm_offset', ['S_4', 'R_{>0}', '{±1}', 'R_{>0}^4', '{±1}^4'])
    """
    return rmsnorm_rule.derive(node, graph)


@rule("layernorm_offset")
def layernorm_offset_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """LayerNorm with weight ``c + w``: the symmetries of ``layernorm``, acting affinely on
    ``w``."""
    return layernorm_rule.derive(node, graph)


def _offset_norm_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    out = dict(params)
    c = float(node.attrs.get("offset", 0.0))
    s_in = t_in[0].sign()
    wk, bk = node.attrs.get("weight_key"), node.attrs.get("bias_key")
    if wk in params:
        w = params[wk]
        v = t_out.out(w + c, 0)
        if s_in is not None:
            v = v * s_in.to(v.dtype)
        out[wk] = v - c
    if bk in params:
        b = t_out.out(params[bk], 0)
        if t_out.shift is not None:
            b = b + t_out.shift.to(b.dtype)
        out[bk] = b
    return out


rmsnorm_offset_rule.action(_offset_norm_act)
layernorm_offset_rule.action(_offset_norm_act)
