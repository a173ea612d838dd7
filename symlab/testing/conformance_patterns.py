"""Conformance snippets for the ops that only a front-end *pattern* produces (several torch ops
read as one graph op): GPT-2's ``Conv1D`` (``linear_t``) and norms whose affine weight is read
as ``1 + weight`` (Gemma's RMSNorm: ``rmsnorm_offset``; the LayerNorm form:
``layernorm_offset``), each written the way the models that use them write it.

Importing this module registers the snippets with :func:`.conformance_ops.register_snippets`.
"""

from __future__ import annotations

import torch
from torch import nn

from symlab.testing.conformance_ops import Snippet, register_snippets

__all__ = ["Conv1D", "LayerNormOffset", "RMSNormOffset"]


class Conv1D(nn.Module):
    """transformers' ``Conv1D``: ``x W + b`` with an ``(in, out)`` weight, through ``addmm``.

    >>> tuple(Conv1D(3, 4)(torch.randn(2, 5, 4)).shape)
    (2, 5, 3)
    """

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.5)
        self.bias = nn.Parameter(torch.randn(nf) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = (*x.size()[:-1], self.nf)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class RMSNormOffset(nn.Module):
    """Gemma's RMSNorm: ``x · rsqrt(mean(x²) + eps) · (1 + weight)``.

    >>> tuple(RMSNormOffset(4)(torch.randn(2, 4)).shape)
    (2, 4)
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(dim) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return out * (1.0 + self.weight.float())


class LayerNormOffset(nn.Module):
    """A LayerNorm written by hand whose scale is stored as an offset from one:
    ``(x − mean) / sqrt(var + eps) · (1 + weight) + bias``.

    >>> tuple(LayerNormOffset(4)(torch.randn(2, 4)).shape)
    (2, 4)
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(dim) * 0.3)
        self.bias = nn.Parameter(torch.randn(dim) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * (1 + self.weight) + self.bias


register_snippets(
    "linear_t",
    [
        Snippet("conv1d", lambda c: Conv1D(c, c)),
        Snippet("conv1d-seq", lambda c: Conv1D(c, c), "seq"),
    ],
)
register_snippets(
    "rmsnorm_offset",
    [
        Snippet("gemma", lambda c: RMSNormOffset(c)),
        Snippet("gemma-seq", lambda c: RMSNormOffset(c), "seq"),
    ],
)
register_snippets(
    "layernorm_offset", [Snippet("ln-offset", lambda c: LayerNormOffset(c, eps=1e-12))]
)
