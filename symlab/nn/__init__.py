"""Model families: MLPs (standard, normalised, residual), W-asymmetric layers and FiGLU."""

from typing import Any

from symlab.graph.presets import LIM_MLP_PRESET
from symlab.nn.asymmetric import FiGLU, WAsymLinear, asym_mask
from symlab.nn.graphnet import GraphNet
from symlab.nn.mlp import MLP

__all__ = ["LIM_MLP_PRESET", "MLP", "FiGLU", "GraphNet", "WAsymLinear", "asym_mask", "zoo"]


def __getattr__(name: str) -> Any:
    # the zoo is loaded on first use (many models, none needed to derive a group)
    if name == "zoo":
        import importlib

        return importlib.import_module("symlab.nn.zoo")
    raise AttributeError(f"module 'symlab.nn' has no attribute {name!r}")
