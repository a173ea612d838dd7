"""The names of the elementwise activations a graph node can carry (``op="activation"``,
``fn=<name>``); :mod:`symlab.nn.activations` builds their torch modules and the symmetry rules
read them by name."""

from __future__ import annotations

__all__ = ["ACTIVATION_NAMES"]

#: Every elementwise activation builders accept, by name.
ACTIVATION_NAMES: tuple[str, ...] = (
    "identity",
    "relu",
    "leaky_relu",
    "tanh",
    "sigmoid",
    "gelu",
    "silu",
    "softplus",
    "elu",
    "relu6",
    "hardtanh",
    "softsign",
    "tanhshrink",
    "mish",
    "hardswish",
    "selu",
    "celu",
    "hardsigmoid",
    "logsigmoid",
)
