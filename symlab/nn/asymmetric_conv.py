"""Asymmetric convolutional units: the W-asymmetric convolution and the channel-wise FiGLU.

Follows Lim, Putterman, Walters, Jegelka, Maron (NeurIPS 2024), "The Empirical Impact of Neural
Parameter Symmetries, or Lack Thereof", extending :mod:`symlab.nn.asymmetric` from linear layers
to convolutions: each output channel's flattened kernel (``in_channels · k · k`` entries) plays
the role of a weight row. Masks, fixed values and gates are buffers made from a seed (via
:func:`symlab.seeding.generator`, never Python's ``hash``); they never train.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from symlab.nn.asymmetric import FiGLU, setup_masked_parameters

__all__ = ["FiGLU2d", "WAsymConv2d"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class WAsymConv2d(nn.Module):
    """W-asymmetric 2-d convolution, ``y = conv(x, F + D ⊙ W) + b`` (Lim et al. 2024).

    Per output channel, ``num_fixed`` of the ``in_channels · kh · kw`` kernel entries are fixed
    (a seeded random subset, :func:`symlab.nn.asymmetric.asym_mask` on the flattened kernel):
    ``D`` (buffer ``mask``, 1 = trainable) is 0 there and ``F = (1 − D) · κ · N(0, 1)`` (buffer
    ``fixed``) holds their values. Only ``weight`` entries with ``mask == 1`` reach the output,
    so the others get zero gradient; they are initialised to zero. Groups are not supported.

    Args:
        in_channels, out_channels, kernel_size: as ``nn.Conv2d``.
        num_fixed: fixed kernel entries per output channel, in ``[0, in_channels · kh · kw]``.
        kappa: scale of the fixed values (κ = 0 keeps only the mask).
        stride, padding, dilation, bias: as ``nn.Conv2d``.
        seed: seeds the mask and the fixed values (architecture: runs to be merged share it).
        init_seed: seeds the trainable initialisation; None draws from torch's global RNG,
            like ``nn.Conv2d``.
        shared_mask: the same fixed positions for every output channel.

    >>> conv = WAsymConv2d(2, 4, 3, num_fixed=5, seed=0)
    >>> (conv.mask == 0).flatten(1).sum(1).tolist()
    [5, 5, 5, 5]
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        num_fixed: int,
        kappa: float = 1.0,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        seed: int = 0,
        init_seed: int | None = None,
        shared_mask: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        shape = (out_channels, in_channels, *self.kernel_size)
        setup_masked_parameters(self, shape, num_fixed, kappa, bias, seed, init_seed, shared_mask)

    def effective_weight(self) -> torch.Tensor:
        """``F + D ⊙ W``, the kernel the layer actually applies."""
        return self.fixed + self.mask * self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            x, self.effective_weight(), self.bias, self.stride, self.padding, self.dilation
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"num_fixed={self.num_fixed}, kappa={self.kappa}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}, shared_mask={self.shared_mask}"
        )


class FiGLU2d(FiGLU):
    """Channel-wise FiGLU, ``σ(x) = sigmoid(C x) ⊙ x`` mixing channels at every position.

    Lim et al.'s σ-asymmetric activation for convolutional networks: ``C`` (buffer ``gate``,
    shape ``[channels, channels]``) is fixed, drawn exactly as :class:`symlab.nn.FiGLU`'s; it
    acts on the channel axis (axis 1) of ``(batch, channels, *positions)`` inputs like a 1×1
    convolution, so on every position it is that module applied to the channel vector.

    >>> act = FiGLU2d(4, seed=0)
    >>> tuple(act(torch.ones(2, 4, 3, 3)).shape)
    (2, 4, 3, 3)
    """

    def __init__(self, num_channels: int, seed: int = 0, scale: float = 1.0) -> None:
        super().__init__(num_channels, seed=seed, scale=scale)
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.einsum("oc,bc...->bo...", self.gate, x)) * x

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"
