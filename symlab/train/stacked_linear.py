"""``stacked_linear``: N linear layers applied at once, ``y[n] = x[n] W[n]ᵀ + b[n]``.

A custom autograd function so that forward and backward are each one batched matmul in the
layout that suits it: weights stay ``[N, out, in]`` (the modules' own layout), the weight
gradient is computed directly in that layout as ``gradᵀ x``, and the input gradient is skipped
when not needed (the first layer). For small output widths (the 10 logits of a classifier) this
is several times faster than autograd's default choice of layouts for ``baddbmm``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["stacked_linear"]


class _StackedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        if b is None:
            return torch.bmm(x, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        gx = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def stacked_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``[N, B, in] × [N, out, in] (+ [N, out]) → [N, B, out]``, N independent linear maps.

    >>> x, w, b = torch.randn(3, 5, 4), torch.randn(3, 2, 4), torch.randn(3, 2)
    >>> y = stacked_linear(x, w, b)
    >>> bool(torch.allclose(y[1], torch.nn.functional.linear(x[1], w[1], b[1]), atol=1e-6))
    True
    """
    return _StackedLinear.apply(x, w, b)
