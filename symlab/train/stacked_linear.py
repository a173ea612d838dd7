"""Kernels of the vectorised fast path: N linear layers at once, and a stacked cross-entropy.

``stacked_linear`` is a custom autograd function so that forward and backward are each one
batched matmul in the layout that suits it (measured on CPU, one thread, for the MNIST-1D MLPs
of benchmark P4):

- weights stay ``[N, out, in]`` (the modules' own layout); the weight gradient is computed in
  whichever operand order is faster (``(xᵀ grad)ᵀ`` when ``in < out``, about 20 % faster for the
  40 → 256 input layer) and the input gradient is skipped when not needed (the first layer);
- a ReLU that follows the layer is fused in: applied in place to the matmul's output, whose
  sign is also the mask of the backward (no separate mask or pre-activation is stored);
- a narrow layer (the 10 logits of a classifier) computes its output transposed,
  ``W xᵀ → [N, out, B]``, and returns a ``[N, B, out]`` view of it: that is about 1.6× faster than
  ``x Wᵀ``, whose inner dimension is tiny.

``stacked_cross_entropy`` is the mean cross-entropy of each of N runs with its gradient computed
in the forward (softmax minus one-hot): several times faster than ``F.cross_entropy`` for few
classes, whose CPU ``log_softmax`` over a short last axis is slow.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["NARROW", "stacked_cross_entropy", "stacked_linear"]

#: Output widths below this compute ``W xᵀ`` (transposed output) in :func:`stacked_linear`.
NARROW = 32


class _StackedLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        relu: bool,
        own_grad: bool,
    ) -> torch.Tensor:
        if w.shape[1] < NARROW:  # [N, out, B] then a [N, B, out] view
            out = (torch.bmm(w, x.mT) if b is None else torch.baddbmm(b.unsqueeze(2), w, x.mT)).mT
        elif b is None:
            out = torch.bmm(x, w.mT)
        else:
            out = torch.baddbmm(b.unsqueeze(1), x, w.mT)
        if relu:
            out.relu_()
            ctx.save_for_backward(x, w, out)
        else:
            ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        ctx.relu = relu
        ctx.own_grad = own_grad
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.relu:
            x, w, out = ctx.saved_tensors
            if ctx.own_grad:  # grad is a fresh tensor of the next layer's backward
                grad = torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
            else:
                grad = torch.ops.aten.threshold_backward(grad, out, 0)
        else:
            x, w = ctx.saved_tensors
        gx = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None
        gw = None
        if ctx.needs_input_grad[1]:
            if x.shape[2] < w.shape[1]:
                gw = torch.bmm(x.mT, grad).mT.contiguous()
            else:
                gw = torch.bmm(grad.mT, x)
        gb = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def stacked_linear(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    relu: bool = False,
    own_grad: bool = False,
) -> torch.Tensor:
    """``[N, B, in] × [N, out, in] (+ [N, out]) → [N, B, out]``, N independent linear maps.

    With ``relu=True`` a ReLU is applied to the result (fused, in place). The result may be a
    non-contiguous view (narrow layers, see the module docstring). ``own_grad=True`` promises
    that the result feeds only another ``stacked_linear``, so that the backward may overwrite
    the gradient it receives (the fused ReLU's mask is applied in place).

    >>> x, w, b = torch.randn(3, 5, 4), torch.randn(3, 2, 4), torch.randn(3, 2)
    >>> y = stacked_linear(x, w, b)
    >>> bool(torch.allclose(y[1], torch.nn.functional.linear(x[1], w[1], b[1]), atol=1e-6))
    True
    """
    return _StackedLinear.apply(x, w, b, relu, own_grad)


class _StackedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = logits.detach()
        top = z.amax(-1, keepdim=True)
        e = (z - top).exp_()
        total = e.sum(-1, keepdim=True)
        lse = total.log().add_(top)
        picked = z.gather(-1, y.unsqueeze(-1))
        loss = (lse - picked).squeeze(-1).mean(1)
        grad = e.div_(total)  # softmax
        grad.scatter_add_(-1, y.unsqueeze(-1), grad.new_full((*y.shape, 1), -1.0))
        ctx.save_for_backward(grad.div_(z.shape[1]))
        return loss

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        (grad,) = ctx.saved_tensors
        return grad * g[:, None, None], None


def stacked_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each run: logits ``[N, B, C]``, integer labels ``[N, B]`` → ``[N]``.

    >>> z, y = torch.randn(2, 5, 3), torch.randint(0, 3, (2, 5))
    >>> want = torch.nn.functional.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none")
    >>> bool(torch.allclose(stacked_cross_entropy(z, y), want.view(2, 5).mean(1), atol=1e-6))
    True
    """
    return _StackedCrossEntropy.apply(logits, y)
