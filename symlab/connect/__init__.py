"""Paths between models: interpolation, barriers, BatchNorm reset, REPAIR, merging, trained
Bézier curves, the three-model simplex, and canonical forms / distances modulo the group.

>>> import symlab as sl, torch
>>> a, b = sl.nn.MLP([4, 8, 3], seed=0), sl.nn.MLP([4, 8, 3], seed=1)
>>> curve = sl.connect.interpolate(a, b, (torch.randn(16, 4), torch.randint(0, 3, (16,))))
>>> sorted(sl.connect.BARRIERS)
['error', 'loss', 'max_endpoint', 'relative_accuracy_drop', 'weighted']
"""

from symlab.connect.barrier import (
    BARRIERS,
    EndpointCheck,
    barrier,
    check_endpoints,
    error_barrier,
    loss_barrier,
    max_endpoint_barrier,
    relative_accuracy_drop,
    weighted_barrier,
)
from symlab.connect.bezier import BezierCurve, bezier_curve, bezier_state
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.connect.canonical import (
    OrbitDistance,
    canonical_permutation_element,
    canonical_translation_element,
    canonicalize,
    orbit_distance,
)
from symlab.connect.interpolate import (
    Curve,
    check_same_architecture,
    interpolate,
    interpolate_state,
)
from symlab.connect.merge import MergeResult, average_state_dicts, merge
from symlab.connect.repair import repair, repair_layers
from symlab.connect.simplex import Simplex, simplex, simplex_grid

__all__ = [
    "BARRIERS",
    "BezierCurve",
    "Curve",
    "EndpointCheck",
    "MergeResult",
    "OrbitDistance",
    "Simplex",
    "average_state_dicts",
    "barrier",
    "bezier_curve",
    "bezier_state",
    "canonical_permutation_element",
    "canonical_translation_element",
    "canonicalize",
    "check_endpoints",
    "check_same_architecture",
    "error_barrier",
    "has_batchnorm",
    "interpolate",
    "interpolate_state",
    "loss_barrier",
    "max_endpoint_barrier",
    "merge",
    "orbit_distance",
    "relative_accuracy_drop",
    "repair",
    "repair_layers",
    "reset_bn_stats",
    "simplex",
    "simplex_grid",
    "weighted_barrier",
]
