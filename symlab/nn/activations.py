"""The torch module of each elementwise activation a graph node can name.

The names are :data:`symlab.graph.activations.ACTIVATION_NAMES` (what graph builders accept);
this table turns a node into its module (used by :class:`symlab.nn.GraphNet`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from symlab.graph.archgraph import Node

__all__ = ["ACTIVATIONS", "activation_module"]

#: Elementwise activations symlab knows, by name, with their torch module.
ACTIVATIONS: dict[str, Callable[[Node], nn.Module]] = {
    "identity": lambda n: nn.Identity(),
    "relu": lambda n: nn.ReLU(),
    "leaky_relu": lambda n: nn.LeakyReLU(n.attrs.get("negative_slope", 0.01)),
    "tanh": lambda n: nn.Tanh(),
    "sigmoid": lambda n: nn.Sigmoid(),
    "gelu": lambda n: nn.GELU(),
    "silu": lambda n: nn.SiLU(),
    "softplus": lambda n: nn.Softplus(),
    "elu": lambda n: nn.ELU(),
    "relu6": lambda n: nn.ReLU6(),
    "hardtanh": lambda n: nn.Hardtanh(),
    "softsign": lambda n: nn.Softsign(),
    "tanhshrink": lambda n: nn.Tanhshrink(),
    "mish": lambda n: nn.Mish(),
    "hardswish": lambda n: nn.Hardswish(),
    "selu": lambda n: nn.SELU(),
    "celu": lambda n: nn.CELU(),
    "hardsigmoid": lambda n: nn.Hardsigmoid(),
    "logsigmoid": lambda n: nn.LogSigmoid(),
}


def activation_module(node: Node) -> nn.Module:
    """The torch module for an ``activation`` node.

    >>> from symlab.graph import ArchGraph
    >>> g = ArchGraph(); _ = g.add("input", "input", width=3)
    >>> activation_module(g.add("act", "activation", ["input"], width=3, fn="tanh"))
    Tanh()
    """
    return ACTIVATIONS[node.attrs["fn"]](node)
