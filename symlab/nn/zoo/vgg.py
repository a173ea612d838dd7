"""VGG-16 for CIFAR-sized inputs, with a width multiplier and optional BatchNorm.

Simonyan and Zisserman (2015)'s configuration "D" (13 3×3 convolutions in five stages, each
stage ending in a 2×2 max-pool) adapted to 32×32 inputs as in Git Re-Basin's CIFAR-10
experiments: after the five pools the feature map is 1×1, so the classifier is a small MLP on
``512 · width`` features. Adaptive average pooling before ``Flatten`` is the identity at
32×32 and lets other input sizes through.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from symlab.nn.zoo._common import NORMS, make_norm, scaled, seeded

__all__ = ["VGG16", "VGG16_CONFIG"]

#: Channels of VGG-16's convolutions; ``"M"`` is a 2×2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG16(nn.Module):
    """VGG-16: ``features`` (conv-norm-ReLU and max-pools), pooling, flatten, ``classifier``.

    Args:
        num_classes: outputs of the classifier.
        width: width multiplier of every convolution (64 … 512) and classifier layer.
        in_channels: input channels.
        norm: ``"batchnorm"`` (default, VGG-16-BN), ``"groupnorm"`` or ``"none"`` (plain VGG-16,
            convolutions with biases).
        classifier: hidden widths of the classifier MLP before the output layer, before the
            width multiplier (Git Re-Basin used 4096, 4096; the default keeps it CIFAR-sized).
        seed: seeds the initialisation (the global RNG is left untouched).

    >>> net = VGG16(width=1 / 16, seed=0)
    >>> tuple(net(torch.zeros(2, 3, 32, 32)).shape)
    (2, 10)
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        norm: str = "batchnorm",
        classifier: Sequence[int] = (512, 512),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {NORMS}")
        with seeded(seed, 0):
            layers: list[nn.Module] = []
            c_in = in_channels
            for v in VGG16_CONFIG:
                if v == "M":
                    layers.append(nn.MaxPool2d(2))
                    continue
                c = scaled(int(v), width)
                layers.append(nn.Conv2d(c_in, c, 3, padding=1, bias=norm == "none"))
                layers.append(make_norm(norm, c))
                layers.append(nn.ReLU())
                c_in = c
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            head: list[nn.Module] = []
            for h in classifier:
                h = scaled(h, width)
                head += [nn.Linear(c_in, h), nn.ReLU()]
                c_in = h
            head.append(nn.Linear(c_in, num_classes))
            self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.flatten(self.pool(x))
        return self.classifier(x)
