"""ResNet-20 for CIFAR-sized inputs (3×32×32), with a width multiplier.

He et al. (2016)'s CIFAR ResNet with three stages of ``blocks_per_stage`` basic blocks
(3 → ResNet-20) and base widths 16/32/64, scaled by the width multiplier as in Ainsworth et al.
(Git Re-Basin, ICLR 2023). Shortcuts that change the shape are 1×1 convolutions followed by a
norm ("option B", as in Git Re-Basin's and Lim et al.'s ResNet-20s).

How the convolutions, activations and classifier are made is delegated to a
:class:`ResNetLayers` object, so that the W-asymmetric and FiGLU variants
(:mod:`symlab.nn.zoo.asym_resnet`) share this exact architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from symlab.nn.zoo._common import NORMS, make_norm, scaled, seeded

__all__ = ["BasicBlock", "ResNet20", "ResNetLayers"]

#: Base channel widths of the three stages (He et al. 2016).
BASE_WIDTHS = (16, 32, 64)


class ResNetLayers:
    """Makes the layers of a :class:`ResNet20`; the base class makes the standard ones.

    ``role`` names where a layer sits: ``"stem"``, ``"stage{s}"`` (a block's 3×3 convolution in
    stage ``s`` = 1, 2, 3), ``"shortcut{s}"`` (a 1×1 projection shortcut) and ``"head"``.
    Subclasses override these methods to swap in other layers.

    >>> class Tanh(ResNetLayers):  # swap every ReLU for a tanh
    ...     def act(self, role, channels):
    ...         return nn.Tanh()
    >>> net = ResNet20(width=0.25, layers=Tanh(), seed=0)
    >>> kinds = {type(m).__name__ for m in net.modules()}
    >>> "ReLU" in kinds, "Tanh" in kinds
    (False, True)
    """

    def conv(
        self, role: str, in_channels: int, out_channels: int, kernel_size: int, stride: int,
        bias: bool,
    ) -> nn.Module:  # fmt: skip
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
            bias=bias,
        )  # fmt: skip

    def act(self, role: str, channels: int) -> nn.Module:
        return nn.ReLU()

    def head(self, in_features: int, out_features: int) -> nn.Module:
        return nn.Linear(in_features, out_features)


class BasicBlock(nn.Module):
    """``act2(norm2(conv2(act1(norm1(conv1(x))))) + shortcut(x))`` with 3×3 convolutions.

    >>> block = BasicBlock(4, 8, stride=2, stage=2, norm="batchnorm", layers=ResNetLayers())
    >>> tuple(block(torch.randn(2, 4, 8, 8)).shape), block.shortcut is not None
    ((2, 8, 4, 4), True)
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        stage: int,
        norm: str,
        layers: ResNetLayers,
    ) -> None:
        super().__init__()
        bias = norm == "none"
        role = f"stage{stage}"
        self.conv1 = layers.conv(role, in_channels, channels, 3, stride, bias)
        self.norm1 = make_norm(norm, channels)
        self.act1 = layers.act(role, channels)
        self.conv2 = layers.conv(role, channels, channels, 3, 1, bias)
        self.norm2 = make_norm(norm, channels)
        self.act2 = layers.act(role, channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                layers.conv(f"shortcut{stage}", in_channels, channels, 1, stride, bias),
                make_norm(norm, channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        out = out + identity
        return self.act2(out)


class ResNet20(nn.Module):
    """CIFAR ResNet: stem, three stages of basic blocks, global average pooling, linear head.

    Args:
        num_classes: outputs of the head.
        width: width multiplier of the base widths 16/32/64 (Git Re-Basin uses 1 to 32).
        in_channels: input channels.
        norm: ``"batchnorm"`` (default), ``"groupnorm"`` (``GroupNorm(1, C)``, as Lim et al.)
            or ``"none"`` (convolutions then get biases).
        blocks_per_stage: 3 gives ResNet-20 (depth ``6n + 2``).
        seed: seeds the initialisation (the global RNG is left untouched).
        layers: how convolutions, activations and head are made (default: standard layers).

    >>> net = ResNet20(width=0.25, seed=0)
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
        blocks_per_stage: int = 3,
        seed: int = 0,
        layers: ResNetLayers | None = None,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {NORMS}")
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        layers = layers or ResNetLayers()
        widths = [scaled(w, width) for w in BASE_WIDTHS]
        with seeded(seed, 0):
            self.conv1 = layers.conv("stem", in_channels, widths[0], 3, 1, norm == "none")
            self.norm1 = make_norm(norm, widths[0])
            self.act1 = layers.act("stem", widths[0])
            c_in = widths[0]
            stages = []
            for s, c in enumerate(widths, start=1):
                blocks = []
                for b in range(blocks_per_stage):
                    stride = 2 if s > 1 and b == 0 else 1
                    blocks.append(BasicBlock(c_in, c, stride, s, norm, layers))
                    c_in = c
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = stages
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.head = layers.head(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.flatten(self.pool(x))
        return self.head(x)
