"""Effective function classes and neuron identifiability (Bürgin, Herbst, Lin, Jegelka 2026).

Per layer: the input support and its coherence, the effective function classes with their
realisation and swap costs, the *effective* symmetry group (units that exchange functions at
no norm cost, beside the structural group), cross-run identifiability with both measures
(function classes after removing gauges; activation correlation), and the alignment-free
merging prediction. Effective alignment itself is :func:`symlab.align.effective_matching`.
"""

from symlab.identify.assignment import AssignmentMargins, min_cost_assignment, permutation_margins
from symlab.identify.consumer import ConsumerCheck, consumer_check, consumer_checks
from symlab.identify.cross_run import (
    FunctionClassLayer,
    function_class_identifiability,
    function_class_layers,
    gauge_distortion,
    gauge_free,
)
from symlab.identify.effective_group import (
    EffectiveGroup,
    effective_group,
    effective_group_from_costs,
)
from symlab.identify.function_classes import (
    FunctionClasses,
    function_classes_from_weights,
    mask_grams,
)
from symlab.identify.identifiability import (
    IdentifiabilityReport,
    LayerIdentifiability,
    identifiability,
    pairwise_identifiability,
)
from symlab.identify.layers import (
    function_classes,
    layer_inputs,
    layer_io,
    layer_parts,
    support_coefficients,
)
from symlab.identify.prediction import (
    RULES,
    Prediction,
    PredictionCheck,
    predict_alignment_free,
    test_prediction,
)
from symlab.identify.relu_exact import ReluRealizers, relu_realizers
from symlab.identify.support import Support, coherence, support

__all__ = [
    "RULES",
    "AssignmentMargins",
    "ConsumerCheck",
    "EffectiveGroup",
    "FunctionClassLayer",
    "FunctionClasses",
    "IdentifiabilityReport",
    "LayerIdentifiability",
    "Prediction",
    "PredictionCheck",
    "ReluRealizers",
    "Support",
    "coherence",
    "consumer_check",
    "consumer_checks",
    "effective_group",
    "effective_group_from_costs",
    "function_class_identifiability",
    "function_class_layers",
    "function_classes",
    "function_classes_from_weights",
    "gauge_distortion",
    "gauge_free",
    "identifiability",
    "layer_inputs",
    "layer_io",
    "layer_parts",
    "mask_grams",
    "min_cost_assignment",
    "pairwise_identifiability",
    "permutation_margins",
    "predict_alignment_free",
    "relu_realizers",
    "support",
    "support_coefficients",
    "test_prediction",
]
