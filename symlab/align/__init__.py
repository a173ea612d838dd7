"""Alignment: find the group element that moves model B's units onto model A's.

Every method returns an :class:`Alignment` (permutations, objective, trace) whose ``apply``
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
from symlab.align.weight_matching import AlignmentError, solve_assignment, weight_matching

__all__ = [
    "Alignment",
    "AlignmentError",
    "activation_matching",
    "solve_assignment",
    "weight_matching",
]
