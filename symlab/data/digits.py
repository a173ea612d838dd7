"""scikit-learn's 8×8 digits (1797 images, 10 classes), which ship with the package."""

from __future__ import annotations

import torch

from symlab.errors import DataError
from symlab.seeding import generator

from ._validate import choice
from .dataset import Dataset
from .registry import register

__all__ = ["digits"]

SCALES = ("unit", "standard", "none")


@register("digits")
def digits(
    seed: int, *, test_fraction: float = 0.2, flatten: bool = True, scale: str = "unit"
) -> Dataset:
    """The UCI handwritten digits from ``sklearn.datasets.load_digits`` (no download).

    ``seed`` shuffles the examples before the split; ``test_fraction`` of them (rounded down)
    form the test split. ``scale``: ``"unit"`` divides pixel values by 16 (into [0, 1]),
    ``"standard"`` standardises each pixel with training-split statistics, ``"none"`` keeps
    0..16. Inputs are ``[n, 64]`` when ``flatten`` else ``[n, 1, 8, 8]``.

    >>> ds = load("digits", seed=0)  # doctest: +SKIP
    >>> ds.x_train.shape, ds.x_test.shape  # doctest: +SKIP
    (torch.Size([1438, 64]), torch.Size([359, 64]))
    """
    from sklearn.datasets import load_digits

    choice("scale", scale, SCALES)
    if not isinstance(test_fraction, int | float) or not 0 <= test_fraction < 1:
        raise DataError(f"option 'test_fraction' must lie in [0, 1), got {test_fraction!r}")
    x_np, y_np = load_digits(return_X_y=True)
    x = torch.tensor(x_np, dtype=torch.float32)
    y = torch.tensor(y_np, dtype=torch.int64)
    order = torch.randperm(len(x), generator=generator(seed, 0))
    x, y = x[order], y[order]
    n_test = int(len(x) * test_fraction)
    n_train = len(x) - n_test
    x_train, x_test = x[:n_train], x[n_train:]
    if scale == "unit":
        x_train, x_test = x_train / 16.0, x_test / 16.0
    elif scale == "standard":
        mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if not flatten:
        x_train, x_test = x_train.view(-1, 1, 8, 8), x_test.view(-1, 1, 8, 8)
    return Dataset(
        "digits",
        x_train,
        y[:n_train],
        x_test,
        y[n_train:],
        task="classification",
        num_classes=10,
        seed=seed,
        options={"test_fraction": test_fraction, "flatten": flatten, "scale": scale},
    )
