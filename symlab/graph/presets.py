"""Published layer settings that graph builders and models share."""

from __future__ import annotations

__all__ = ["LIM_MLP_PRESET"]

#: Lim et al.'s MNIST MLP (784-512-512-512-10): fixed entries per row and κ per layer
#: (Lim, Putterman, Walters, Jegelka, Maron, NeurIPS 2024, from their released code).
LIM_MLP_PRESET: dict[str, tuple[float, ...]] = {
    "num_fixed": (64, 64, 64, 256),
    "kappa": (1.0, 1.0, 0.5, 0.25),
}
