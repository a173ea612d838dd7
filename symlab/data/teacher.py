"""Teacher–student data: inputs ``x ~ N(0, I)`` labelled by a random teacher MLP.

The classic setting for studying what a student network can recover (e.g. Goldt et al. 2019;
Simsek et al. 2021 on symmetry-induced critical points). The teacher is built from the seed and
returned in ``meta["teacher"]`` so experiments can compare students with it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from symlab.errors import DataError
from symlab.seeding import generator

from ._validate import choice, non_negative, positive_int
from .dataset import Dataset
from .registry import register

__all__ = ["ACTIVATIONS", "random_mlp", "teacher"]

#: Teacher activations by name, with the gain of their weight initialisation.
ACTIVATIONS: dict[str, tuple[type[nn.Module], float]] = {
    "relu": (nn.ReLU, math.sqrt(2.0)),
    "leaky_relu": (nn.LeakyReLU, math.sqrt(2.0)),
    "tanh": (nn.Tanh, 1.0),
    "sigmoid": (nn.Sigmoid, 1.0),
    "gelu": (nn.GELU, math.sqrt(2.0)),
    "silu": (nn.SiLU, math.sqrt(2.0)),
    "softplus": (nn.Softplus, 1.0),
    "identity": (nn.Identity, 1.0),
}


def random_mlp(
    widths: Sequence[int], activation: str = "relu", *, seed: int = 0, bias: bool = True
) -> nn.Sequential:
    """A random MLP ``Linear, act, ..., Linear`` with weights ``N(0, gain² / fan_in)``.

    Biases are ``N(0, 0.1²)``. All randomness comes from ``seed`` (via
    :func:`symlab.seeding.generator`), never from torch's global generator.

    >>> net = random_mlp([3, 5, 1], "tanh", seed=0); net(torch.zeros(2, 3)).shape
    torch.Size([2, 1])
    """
    choice("activation", activation, ACTIVATIONS)
    if len(widths) < 2:
        raise DataError(f"option 'widths' needs at least input and output width, got {widths!r}")
    for w in widths:
        positive_int("widths", w)
    act_cls, gain = ACTIVATIONS[activation]
    g = generator(seed, 7)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        # built on "meta" so the global torch generator is not consumed
        lin = nn.Linear(fan_in, fan_out, bias=bias, device="meta").to_empty(device="cpu")
        with torch.no_grad():
            lin.weight.copy_(torch.randn(fan_out, fan_in, generator=g) * gain / math.sqrt(fan_in))
            if bias:
                lin.bias.copy_(0.1 * torch.randn(fan_out, generator=g))
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(act_cls())
    return nn.Sequential(*layers).requires_grad_(False)


@register("teacher")
def teacher(
    seed: int,
    *,
    widths: tuple[int, ...] = (20, 64, 1),
    activation: str = "relu",
    task: str = "regression",
    n_train: int = 1024,
    n_test: int = 1024,
    noise: float = 0.0,
    bias: bool = True,
) -> Dataset:
    """Inputs ``x ~ N(0, I_{widths[0]})`` labelled by a random teacher MLP of ``widths``.

    ``task="regression"``: targets ``teacher(x) + noise · N(0, 1)``, shape ``[n, widths[-1]]``.
    ``task="classification"``: labels ``argmax(teacher(x) + noise · N(0, 1))`` over
    ``widths[-1] >= 2`` classes (classes need not be balanced). The teacher
    (:func:`random_mlp`) is ``meta["teacher"]``.

    >>> ds = load("teacher", seed=1, widths=(4, 8, 3), task="classification")  # doctest: +SKIP
    >>> ds.num_classes, ds.input_shape  # doctest: +SKIP
    (3, (4,))
    """
    choice("task", task, ("regression", "classification"))
    positive_int("n_train", n_train)
    positive_int("n_test", n_test, minimum=0)
    non_negative("noise", noise)
    widths = tuple(widths)
    net = random_mlp(widths, activation, seed=seed, bias=bias)
    if task == "classification" and widths[-1] < 2:
        raise DataError(
            f"classification needs widths[-1] >= 2 (the number of classes), got {widths!r}"
        )
    g = generator(seed, 8)
    x = torch.randn(n_train + n_test, widths[0], generator=g)
    with torch.no_grad():
        out = net(x)
    out = out + noise * torch.randn(out.shape, generator=g)
    y = out.argmax(1) if task == "classification" else out
    return Dataset(
        "teacher",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        task="classification" if task == "classification" else "regression",
        num_classes=widths[-1] if task == "classification" else None,
        seed=seed,
        options={
            "widths": widths,
            "activation": activation,
            "task": task,
            "n_train": n_train,
            "n_test": n_test,
            "noise": noise,
            "bias": bias,
        },
        meta={"teacher": net},
    )
