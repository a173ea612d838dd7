"""Model families: MLPs (standard, normalised, residual), W-asymmetric layers and FiGLU."""

from typing import Any

from symlab.nn.asymmetric import LIM_MLP_PRESET, FiGLU, WAsymLinear, asym_mask

__all__ = ["LIM_MLP_PRESET", "MLP", "FiGLU", "GraphNet", "WAsymLinear", "asym_mask", "zoo"]


def __getattr__(name: str) -> Any:
    # GraphNet and MLP import the graph package, which itself reads the layers above:
    # load them on first use to keep the import graph acyclic.
    if name == "GraphNet":
        from symlab.nn.graphnet import GraphNet

        return GraphNet
    if name == "MLP":
        from symlab.nn.mlp import MLP

        return MLP
    if name == "zoo":
        import importlib

        return importlib.import_module("symlab.nn.zoo")
    raise AttributeError(f"module 'symlab.nn' has no attribute {name!r}")
