"""W-asymmetric and FiGLU ResNet-20s (Lim et al. 2024) on :class:`~symlab.nn.zoo.ResNet20`.

:class:`WAsymResNet20` replaces every convolution by a :class:`WAsymConv2d` and the head by a
:class:`~symlab.nn.WAsymLinear`; how many kernel entries each layer fixes comes from an
:class:`AsymPreset`. :class:`FiGLUResNet20` replaces every ReLU by a channel-wise
:class:`FiGLU2d`. Both keep the standard ResNet-20's module names and shapes.

Presets (:data:`WASYM_RESNET20_PRESETS`):

- ``"lim"``: the counts of Lim et al.'s released W-asymmetric ResNet-20 (the
  ``asymmetric-networks`` repository, ``lmc/train-cifar-resnet.py`` at multipliers 1):
  12 fixed entries per output channel in the stem, 36 / 54 / 72 in the 3×3 convolutions of
  stages 1 / 2 / 3, 4 / 6 / 8 in the 1×1 shortcuts, 8 in the head, κ = 3. They are absolute
  counts, as in their code, so wider networks keep the same number of fixed entries per channel;
  they need width ≥ 0.375 (stage 2's first convolution has fan-in ``144 · width``).
- ``"lim_fraction"``: the same layers' counts as fractions of their fan-in at width 1
  (stem 12/27, stages 36/144, 54/288, 72/576, shortcuts 6/16, 8/32, head 8/64) applied to each
  layer's actual fan-in, so the preset scales with the width multiplier and works for the tiny
  networks of tests. Each layer fixes ``round(fraction · fan_in)`` entries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from symlab.nn.asymmetric import WAsymLinear
from symlab.nn.asymmetric_conv import FiGLU2d, WAsymConv2d
from symlab.nn.zoo.resnet import ResNet20, ResNetLayers
from symlab.seeding import child_seed

__all__ = [
    "WASYM_RESNET20_PRESETS",
    "AsymPreset",
    "FiGLUResNet20",
    "WAsymResNet20",
]

ROLES = ("stem", "stage1", "stage2", "stage3", "shortcut1", "shortcut2", "shortcut3", "head")


@dataclass(frozen=True)
class AsymPreset:
    """Fixed entries per output unit for each layer role of a ResNet-20, and the scale κ.

    ``num_fixed`` maps roles (``"stem"``, ``"stage{s}"``, ``"shortcut{s}"``, ``"head"``) to a
    count, or, when ``relative`` is true, to a fraction of the layer's fan-in.

    >>> AsymPreset.uniform(0.25).count("stage1", fan_in=144)
    36
    """

    num_fixed: Mapping[str, float]
    kappa: float = 1.0
    relative: bool = False
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        missing = [r for r in ROLES if r not in self.num_fixed]
        unknown = [r for r in self.num_fixed if r not in ROLES]
        if missing or unknown:
            raise ValueError(
                f"preset {self.name!r}: missing roles {missing}, unknown roles {unknown}; "
                f"give one entry for each of {ROLES}"
            )
        for role, v in self.num_fixed.items():
            if v < 0 or (self.relative and v > 1):
                bound = "[0, 1]" if self.relative else ">= 0"
                raise ValueError(f"preset {self.name!r}: {role}={v} must be {bound}")
        object.__setattr__(self, "num_fixed", MappingProxyType(dict(self.num_fixed)))

    @classmethod
    def uniform(cls, fraction: float, kappa: float = 1.0) -> AsymPreset:
        """The same fraction of the fan-in fixed in every layer."""
        return cls(dict.fromkeys(ROLES, fraction), kappa, True, f"uniform({fraction})")

    def count(self, role: str, fan_in: int) -> int:
        """Fixed entries per output unit of a layer in ``role`` with fan-in ``fan_in``."""
        v = self.num_fixed[role]
        n = math.floor(v * fan_in + 0.5) if self.relative else int(v)
        if n > fan_in:
            raise ValueError(
                f"preset {self.name!r} fixes {n} entries per unit in a {role} layer with fan-in "
                f"{fan_in}; use a wider network or a relative preset such as 'lim_fraction'"
            )
        return n


#: Named presets for :class:`WAsymResNet20` (see the module docstring for their origin).
WASYM_RESNET20_PRESETS: dict[str, AsymPreset] = {
    "lim": AsymPreset(
        {"stem": 12, "stage1": 36, "stage2": 54, "stage3": 72,
         "shortcut1": 4, "shortcut2": 6, "shortcut3": 8, "head": 8},
        kappa=3.0, name="lim",
    ),
    "lim_fraction": AsymPreset(
        {"stem": 12 / 27, "stage1": 36 / 144, "stage2": 54 / 288, "stage3": 72 / 576,
         "shortcut1": 4 / 16, "shortcut2": 6 / 16, "shortcut3": 8 / 32, "head": 8 / 64},
        kappa=3.0, relative=True, name="lim_fraction",
    ),
}  # fmt: skip


def _preset(preset: str | AsymPreset) -> AsymPreset:
    if isinstance(preset, AsymPreset):
        return preset
    if preset not in WASYM_RESNET20_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {list(WASYM_RESNET20_PRESETS)}")
    return WASYM_RESNET20_PRESETS[preset]


class _WAsymLayers(ResNetLayers):
    """W-asymmetric convolutions and head; layer ``i`` (in build order) gets mask seed ``i``."""

    def __init__(self, preset: AsymPreset, kappa: float, mask_seed: int) -> None:
        self.preset, self.kappa, self.mask_seed, self._next = preset, kappa, mask_seed, 0

    def _seed(self) -> int:
        self._next += 1
        return child_seed(self.mask_seed, self._next - 1)

    def conv(
        self, role: str, in_channels: int, out_channels: int, kernel_size: int, stride: int,
        bias: bool,
    ) -> nn.Module:  # fmt: skip
        n = self.preset.count(role, in_channels * kernel_size**2)
        return WAsymConv2d(
            in_channels, out_channels, kernel_size, n, self.kappa, stride=stride,
            padding=kernel_size // 2, bias=bias, seed=self._seed(),
        )  # fmt: skip

    def head(self, in_features: int, out_features: int) -> nn.Module:
        n = self.preset.count("head", in_features)
        return WAsymLinear(in_features, out_features, n, self.kappa, seed=self._seed())


class _FiGLULayers(ResNetLayers):
    """Standard convolutions; every activation a FiGLU2d with its own gate seed."""

    def __init__(self, mask_seed: int, scale: float) -> None:
        self.mask_seed, self.scale, self._next = mask_seed, scale, 0

    def act(self, role: str, channels: int) -> nn.Module:
        self._next += 1
        return FiGLU2d(channels, seed=child_seed(self.mask_seed, self._next - 1), scale=self.scale)


class WAsymResNet20(ResNet20):
    """ResNet-20 with W-asymmetric convolutions and head (Lim et al. 2024).

    Args:
        num_classes, width, in_channels, norm, blocks_per_stage, seed: as :class:`ResNet20`.
        preset: a name in :data:`WASYM_RESNET20_PRESETS` or an :class:`AsymPreset`.
        kappa: scale of the fixed entries (default: the preset's κ).
        mask_seed: seeds every mask and fixed value (architecture, shared by runs to merge).

    >>> import torch
    >>> net = WAsymResNet20(width=0.25, preset="lim_fraction", seed=0, mask_seed=1)
    >>> tuple(net(torch.zeros(2, 3, 8, 8)).shape)
    (2, 10)
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        *,
        preset: str | AsymPreset = "lim",
        kappa: float | None = None,
        in_channels: int = 3,
        norm: str = "batchnorm",
        blocks_per_stage: int = 3,
        seed: int = 0,
        mask_seed: int = 0,
    ) -> None:
        p = _preset(preset)
        layers = _WAsymLayers(p, p.kappa if kappa is None else float(kappa), mask_seed)
        super().__init__(
            num_classes, width, in_channels=in_channels, norm=norm,
            blocks_per_stage=blocks_per_stage, seed=seed, layers=layers,
        )  # fmt: skip
        self.preset = p


class FiGLUResNet20(ResNet20):
    """ResNet-20 whose ReLUs are channel-wise FiGLUs (Lim et al.'s σ-asymmetric network).

    Args:
        num_classes, width, in_channels, norm, blocks_per_stage, seed: as :class:`ResNet20`.
        mask_seed: seeds the FiGLU gates (architecture, shared by runs to merge).
        gate_scale: standard deviation of the gate entries times ``sqrt(channels)``.

    >>> import torch
    >>> net = FiGLUResNet20(width=0.25, seed=0)
    >>> tuple(net(torch.zeros(2, 3, 8, 8)).shape)
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
        mask_seed: int = 0,
        gate_scale: float = 1.0,
    ) -> None:
        super().__init__(
            num_classes, width, in_channels=in_channels, norm=norm,
            blocks_per_stage=blocks_per_stage, seed=seed,
            layers=_FiGLULayers(mask_seed, gate_scale),
        )  # fmt: skip
