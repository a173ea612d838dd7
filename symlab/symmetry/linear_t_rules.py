"""A linear map stored with its weight transposed: ``y = x W + b``, ``W`` of shape ``(in, out)``
(GPT-2's ``Conv1D``, read by :mod:`symlab.frontend.patterns.conv1d`; ``x @ self.W`` written by
hand, with or without a bias, by :mod:`symlab.frontend.patterns.param_matmul`).

It is ``nn.Linear`` with weight ``Wᵀ``, so it has the same symmetries: any invertible map of its
input and of its output (``Wᵀ ↦ A Wᵀ B⁻¹``, i.e. ``W ↦ B⁻ᵀ W Aᵀ``), and it absorbs a shift of its
input into its bias. It is a separate op (not ``linear`` with a flag) so that rules reading a
``linear`` producer's weight rows (softmax and LayerNorm translations) never misread it.
"""

from __future__ import annotations

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.builtin_rules import _linear_act, linear_rule
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import OpSymmetry
from symlab.symmetry.transform import Transform

Params = dict[str, torch.Tensor]

__all__ = ["linear_t_rule"]


@rule("linear_t")
def linear_t_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """``y = x W + b`` with ``W`` stored ``(in, out)``: the symmetries of ``linear``.

    >>> import torch, symlab as sl
    >>> from torch import nn
    >>> class Conv1D(nn.Module):  # transformers.pytorch_utils.Conv1D
    ...     def __init__(self, nf, nx):
    ...         super().__init__()
    ...         self.nf = nf
    ...         self.weight = nn.Parameter(torch.randn(nx, nf))
    ...         self.bias = nn.Parameter(torch.zeros(nf))
    ...     def forward(self, x):
    ...         size_out = x.size()[:-1] + (self.nf,)
    ...         x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
    ...         return x.view(size_out)
    >>> net = nn.Sequential(Conv1D(4, 3), nn.ReLU(), Conv1D(2, 4))
    >>> G = sl.symmetries(net, torch.randn(5, 3))
    >>> [n.op for n in G.graph.nodes()], [f.short() for f in G.factors]
    (['input', 'linear_t', 'activation', 'linear_t', 'output'], ['S_4', 'R_{>0}^4'])
    """
    return linear_rule.derive(node, graph)


@linear_t_rule.action
def _linear_t_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    wk, bk = node.attrs["weight_key"], node.attrs.get("bias_key")
    stored = {"weight": params[wk].T} | ({"bias": params[bk]} if bk is not None else {})
    moved = _linear_act(node, stored, t_in, t_out)
    out = dict(params, **{wk: moved["weight"].T.contiguous()})
    return out if bk is None else dict(out, **{bk: moved["bias"]})
