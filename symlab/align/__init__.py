"""Alignment: find the group element that moves model B's units onto model A's.

Methods: weight matching (optionally at canonical scale), activation matching, optimal
transport (soft plans, also across widths), the straight-through estimator, and joint
(MergeMany) alignment of many models into one unit order.

Every method returns an :class:`Alignment` (permutations, objective, trace; optimal transport a
:class:`TransportAlignment` of soft plans, rounded by ``.to_alignment()``) whose ``apply``
acts through the derived group's ``G.act``.

>>> import symlab as sl, torch
>>> net = sl.nn.MLP([4, 8, 8, 3], seed=0); G = sl.symmetries(net)
>>> sd = net.state_dict(); h = G.sample(0)
>>> al = sl.align.weight_matching(sd, G.act(h, sd), G, seed=0)
>>> al.objective == al.trace[-1] and al.trace[-1] >= al.trace[0]
True
"""

from symlab.align.activation_matching import activation_matching
from symlab.align.alignment import Alignment
from symlab.align.gauge import canonical_scale_element, canonical_sign_element
from symlab.align.joint import JointAlignment, joint_alignment
from symlab.align.ste import straight_through
from symlab.align.transport import TransportAlignment, fuse_state_dicts, ot_alignment, ot_fuse
from symlab.align.weight_matching import AlignmentError, solve_assignment, weight_matching

__all__ = [
    "Alignment",
    "AlignmentError",
    "JointAlignment",
    "TransportAlignment",
    "activation_matching",
    "canonical_scale_element",
    "canonical_sign_element",
    "fuse_state_dicts",
    "joint_alignment",
    "ot_alignment",
    "ot_fuse",
    "solve_assignment",
    "straight_through",
    "weight_matching",
]
