"""ResNet-50 (bottleneck blocks, ImageNet structure) with a width multiplier.

He et al. (2016)'s ResNet-50 as in torchvision (stride on the 3×3 convolution, "v1.5"): a
7×7 stride-2 stem and 3×3 max-pool, four stages of 3/4/6/3 bottleneck blocks with base widths
64/128/256/512 and expansion 4, global average pooling and a linear head. Adaptive pooling makes
any input size from 32×32 up work; ``stem="cifar"`` swaps in a 3×3 stride-1 stem without
max-pool for small images. The width multiplier lets tests build a tiny one; git-re-basin's
hand-written ResNet-50 spec (whose typos motivated symlab) describes exactly this structure.
"""

from __future__ import annotations

import torch
from torch import nn

from symlab.nn.zoo._common import NORMS, make_norm, scaled, seeded

__all__ = ["Bottleneck", "ResNet50"]

#: Blocks per stage and base widths of ResNet-50.
STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))


class Bottleneck(nn.Module):
    """``relu(norm3(conv3(relu(norm2(conv2(relu(norm1(conv1(x)))))))) + downsample(x))``.

    1×1 (reduce) → 3×3 (with the stride) → 1×1 (expand by ``expansion``).

    >>> block = Bottleneck(16, planes=4, stride=1, norm="batchnorm")
    >>> tuple(block(torch.randn(2, 16, 8, 8)).shape), block.downsample is None
    ((2, 16, 8, 8), True)
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        bias = norm == "none"
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=bias)
        self.norm1 = make_norm(norm, planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=bias)
        self.norm2 = make_norm(norm, planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=bias)
        self.norm3 = make_norm(norm, out_channels)
        self.relu3 = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias),
                make_norm(norm, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.norm1(self.conv1(x)))
        out = self.relu2(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        out = out + identity
        return self.relu3(out)


class ResNet50(nn.Module):
    """ResNet-50 with configurable classes, input channels, width and stem.

    Args:
        num_classes: outputs of the head (1000 for ImageNet).
        width: multiplier of the base widths 64/128/256/512 (and of the stem's 64).
        in_channels: input channels.
        norm: ``"batchnorm"`` (default), ``"groupnorm"`` or ``"none"``.
        stem: ``"imagenet"`` (7×7 stride 2 + max-pool) or ``"cifar"`` (3×3 stride 1).
        seed: seeds the initialisation (the global RNG is left untouched).

    >>> net = ResNet50(num_classes=5, width=1 / 16, seed=0)
    >>> tuple(net(torch.zeros(2, 3, 32, 32)).shape)
    (2, 5)
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width: float = 1.0,
        *,
        in_channels: int = 3,
        norm: str = "batchnorm",
        stem: str = "imagenet",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {NORMS}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        c0 = scaled(64, width)
        with seeded(seed, 0):
            if stem == "imagenet":
                self.conv1 = nn.Conv2d(in_channels, c0, 7, stride=2, padding=3, bias=norm == "none")
            else:
                self.conv1 = nn.Conv2d(in_channels, c0, 3, padding=1, bias=norm == "none")
            self.norm1 = make_norm(norm, c0)
            self.relu = nn.ReLU()
            self.maxpool: nn.Module = (
                nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
            )
            c_in = c0
            stages = []
            for s, (n_blocks, base) in enumerate(STAGES):
                planes = scaled(base, width)
                blocks = []
                for b in range(n_blocks):
                    stride = 2 if s > 0 and b == 0 else 1
                    blocks.append(Bottleneck(c_in, planes, stride, norm))
                    c_in = planes * Bottleneck.expansion
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.norm1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.flatten(self.pool(x))
        return self.head(x)
