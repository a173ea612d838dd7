"""A small CNN for MNIST-shaped images (1×28×28) or MNIST-1D signals (1×40).

Three conv → norm → ReLU blocks (max-pooling after the first two), adaptive average pooling,
``Flatten`` and a linear classifier: the shape of the CNN that Greydanus and Kobak use as the
MNIST-1D convolutional baseline, written with standard ``torch.nn`` modules so that
:func:`symlab.trace` can trace it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from symlab.nn.zoo._common import make_norm, seeded

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """conv-norm-ReLU ×3 → adaptive pooling → flatten → linear.

    Args:
        in_channels: input channels (1 for MNIST and MNIST-1D).
        num_classes: outputs of the classifier.
        widths: channels of the three (or more) conv blocks.
        dims: 2 for images ``(N, C, H, W)``, 1 for signals ``(N, C, L)`` (MNIST-1D: reshape its
            ``(N, 40)`` inputs to ``(N, 1, 40)``).
        kernel_size: odd kernel size; convolutions are padded to keep the size.
        norm: ``"batchnorm"``, ``"groupnorm"`` or ``"none"`` after each convolution.
        pool_size: output size of the adaptive average pooling per spatial dimension; the
            classifier sees ``widths[-1] * pool_size**dims`` features (``pool_size > 1`` makes
            the flatten turn each channel into a block of features).
        seed: seeds the initialisation (the global RNG is left untouched).

    >>> net = SmallCNN(dims=1, widths=(4, 8, 8), seed=0)
    >>> tuple(net(torch.zeros(2, 1, 40)).shape)
    (2, 10)
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 64),
        *,
        dims: int = 2,
        kernel_size: int = 3,
        norm: str = "batchnorm",
        pool_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if len(widths) < 1:
            raise ValueError("widths needs at least one conv block")
        self.dims = dims
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        max_pool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
        avg_pool = nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d
        with seeded(seed, 0):
            blocks: list[nn.Module] = []
            c_in = in_channels
            for i, c_out in enumerate(widths):
                layers: OrderedDict[str, nn.Module] = OrderedDict()
                layers["conv"] = conv(
                    c_in, c_out, kernel_size, padding=kernel_size // 2, bias=norm == "none"
                )
                layers["norm"] = make_norm(norm, c_out, dims)
                layers["act"] = nn.ReLU()
                if i < min(2, len(widths) - 1):
                    layers["pool"] = max_pool(2)
                blocks.append(nn.Sequential(layers))
                c_in = c_out
            self.blocks = nn.Sequential(*blocks)
            self.pool = avg_pool(pool_size)
            self.flatten = nn.Flatten()
            self.head = nn.Linear(c_in * pool_size**dims, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        x = self.pool(x)
        x = self.flatten(x)
        return self.head(x)
