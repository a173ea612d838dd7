"""Effective function classes and neuron identifiability (Bürgin, Herbst, Lin, Jegelka 2026)."""

from symlab.identify.function_classes import FunctionClasses, function_classes_from_weights
from symlab.identify.identifiability import (
    IdentifiabilityReport,
    LayerIdentifiability,
    identifiability,
    pairwise_identifiability,
)
from symlab.identify.layers import function_classes, layer_inputs
from symlab.identify.prediction import (
    Prediction,
    PredictionCheck,
    predict_alignment_free,
    test_prediction,
)
from symlab.identify.relu_exact import ReluRealizers, relu_realizers
from symlab.identify.support import Support, coherence, support

__all__ = [
    "FunctionClasses",
    "IdentifiabilityReport",
    "LayerIdentifiability",
    "Prediction",
    "PredictionCheck",
    "ReluRealizers",
    "Support",
    "coherence",
    "function_classes",
    "function_classes_from_weights",
    "identifiability",
    "layer_inputs",
    "pairwise_identifiability",
    "predict_alignment_free",
    "relu_realizers",
    "support",
    "test_prediction",
]
