"""Effective function classes and neuron identifiability (Bürgin, Herbst, Lin, Jegelka 2026)."""

from symlab.identify.function_classes import FunctionClasses, function_classes_from_weights
from symlab.identify.layers import function_classes, layer_inputs
from symlab.identify.relu_exact import ReluRealizers, relu_realizers
from symlab.identify.support import Support, coherence, support

__all__ = [
    "FunctionClasses",
    "ReluRealizers",
    "Support",
    "coherence",
    "function_classes",
    "function_classes_from_weights",
    "layer_inputs",
    "relu_realizers",
    "support",
]
