"""A Gaussian mixture classification problem: one isotropic Gaussian per class."""

from __future__ import annotations

import math

import torch

from symlab.seeding import generator

from ._validate import non_negative, positive_int
from .dataset import Dataset
from .registry import register

__all__ = ["gaussian_mixture"]


@register("gaussian_mixture")
def gaussian_mixture(
    seed: int,
    *,
    num_classes: int = 3,
    dim: int = 2,
    n_train: int = 1000,
    n_test: int = 1000,
    separation: float = 3.0,
    std: float = 1.0,
) -> Dataset:
    """Points ``x = μ_y + std · N(0, I_dim)`` with balanced labels ``y`` in ``[0, num_classes)``.

    Class means are ``μ_c = separation · N(0, I_dim) / sqrt(dim)``, so their norms are about
    ``separation``; they are returned in ``meta["means"]``. Labels cycle through the classes and
    are then shuffled, so every class has ``n // num_classes`` or one more examples per split.

    >>> ds = load("gaussian_mixture", seed=0, num_classes=4, dim=5)  # doctest: +SKIP
    >>> ds.input_shape, ds.num_classes  # doctest: +SKIP
    ((5,), 4)
    """
    positive_int("num_classes", num_classes, minimum=2)
    positive_int("dim", dim)
    positive_int("n_train", n_train)
    positive_int("n_test", n_test, minimum=0)
    non_negative("separation", separation)
    non_negative("std", std)
    g = generator(seed, 11)
    means = separation * torch.randn(num_classes, dim, generator=g) / math.sqrt(dim)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        return means[y] + std * torch.randn(n, dim, generator=g), y

    x_train, y_train = split(n_train)
    x_test, y_test = split(n_test)
    return Dataset(
        "gaussian_mixture",
        x_train,
        y_train,
        x_test,
        y_test,
        task="classification",
        num_classes=num_classes,
        seed=seed,
        options={
            "num_classes": num_classes,
            "dim": dim,
            "n_train": n_train,
            "n_test": n_test,
            "separation": separation,
            "std": std,
        },
        meta={"means": means},
    )
