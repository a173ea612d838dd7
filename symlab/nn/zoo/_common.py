"""Helpers shared by the zoo: seeded construction, width multipliers and norm layers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from symlab.seeding import child_seed

__all__ = ["NORMS", "make_norm", "scaled", "seeded"]

#: Normalisation options of the convolutional zoo models.
NORMS = ("batchnorm", "groupnorm", "none")


@contextmanager
def seeded(seed: int, *keys: int) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded from ``child_seed(seed, *keys)``.

    The global RNG is restored afterwards, so building a model never disturbs the caller's
    random stream.

    >>> with seeded(0, 1):
    ...     a = torch.rand(2)
    >>> with seeded(0, 1):
    ...     b = torch.rand(2)
    >>> bool((a == b).all())
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(child_seed(seed, *keys))
        yield


def scaled(base: int, width: float) -> int:
    """``base`` channels times the width multiplier ``width``, rounded, at least 1.

    >>> scaled(16, 0.25), scaled(64, 2), scaled(16, 0.01)
    (4, 128, 1)
    """
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    return max(1, round(base * width))


def make_norm(norm: str, channels: int, dims: int = 2) -> nn.Module:
    """The normalisation layer after a convolution.

    ``"batchnorm"``: ``BatchNorm{dims}d``; ``"groupnorm"``: ``GroupNorm(1, C)`` (normalises over
    channels and positions, as in Lim et al.'s ResNets); ``"none"``: ``nn.Identity``.
    """
    if norm == "batchnorm":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if norm == "groupnorm":
        return nn.GroupNorm(1, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose from {NORMS}")
