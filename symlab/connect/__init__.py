"""Linear paths between models: interpolation, barriers, BatchNorm reset, REPAIR, merging.

>>> import symlab as sl, torch
>>> a, b = sl.nn.MLP([4, 8, 3], seed=0), sl.nn.MLP([4, 8, 3], seed=1)
>>> curve = sl.connect.interpolate(a, b, (torch.randn(16, 4), torch.randint(0, 3, (16,))))
>>> sorted(sl.connect.BARRIERS)
['error', 'loss', 'relative_accuracy_drop', 'weighted']
"""

from symlab.connect.barrier import (
    BARRIERS,
    barrier,
    error_barrier,
    loss_barrier,
    relative_accuracy_drop,
    weighted_barrier,
)
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.connect.interpolate import (
    Curve,
    check_same_architecture,
    interpolate,
    interpolate_state,
)
from symlab.connect.merge import MergeResult, average_state_dicts, merge
from symlab.connect.repair import repair, repair_layers

__all__ = [
    "BARRIERS",
    "Curve",
    "MergeResult",
    "average_state_dicts",
    "barrier",
    "check_same_architecture",
    "error_barrier",
    "has_batchnorm",
    "interpolate",
    "interpolate_state",
    "loss_barrier",
    "merge",
    "relative_accuracy_drop",
    "repair",
    "repair_layers",
    "reset_bn_stats",
    "weighted_barrier",
]
