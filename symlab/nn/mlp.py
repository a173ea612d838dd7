"""The MLP model family (standard, normalised, residual, W-asymmetric, FiGLU)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from symlab.graph.builders import mlp
from symlab.nn.graphnet import GraphNet

__all__ = ["MLP"]


class MLP(GraphNet):
    """A multilayer perceptron; see :func:`symlab.graph.mlp` for the options.

    ``seed`` seeds the trainable initialisation; ``mask_seed`` the asymmetric masks/gates.

    >>> import torch
    >>> net = MLP([40, 64, 64, 10], activation="gelu", norm="layernorm", seed=1)
    >>> tuple(net(torch.zeros(2, 40)).shape)
    (2, 10)
    """

    def __init__(
        self,
        widths: Sequence[int],
        activation: str | Sequence[str] = "relu",
        *,
        seed: int = 0,
        dtype: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(mlp(widths, activation, **options), seed=seed, dtype=dtype)
