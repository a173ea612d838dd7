"""The :class:`Alignment`: what every alignment method returns.

An alignment is an element of the derived :class:`~symlab.symmetry.SymmetryGroup` that moves
model B's units onto model A's. Applying it goes through ``G.act`` — symlab has no second
implementation of "permute a state_dict".
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from symlab.symmetry.factors import GroupElement
from symlab.symmetry.group import SymmetryGroup

__all__ = ["Alignment"]


@dataclass(frozen=True, eq=False)
class Alignment:
    """B-to-A unit matching found by an alignment method.

    Attributes:
        group: the symmetry group the alignment lives in.
        perms: permutation factor name → index tensor (``perm[i]`` = unit of B that becomes
            unit ``i``, the convention of :class:`~symlab.symmetry.GroupElement`).
        element: the full group element (other factors at the identity).
        objective: the final value of the method's objective (larger is better).
        trace: the objective after initialisation and after every pass.
        method: ``"weight_matching"``, ``"activation_matching"``, ...
        info: method-specific diagnostics (passes, solves, constant units, ...).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> moved = G.act(G.element({"P[layers.0.linear]": torch.tensor([1, 0, 3, 2])}), sd)
    >>> al = sl.align.weight_matching(sd, moved, G)
    >>> al.method, al.perms["P[layers.0.linear]"].tolist()
    ('weight_matching', [1, 0, 3, 2])
    >>> all(torch.equal(al.apply(moved)[k], sd[k]) for k in sd)
    True
    """

    group: SymmetryGroup
    perms: dict[str, torch.Tensor]
    element: GroupElement
    objective: float
    trace: list[float] = field(default_factory=list)
    method: str = ""
    info: dict[str, object] = field(default_factory=dict)

    def apply(self, state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        """``state_dict`` moved by :attr:`element` (``G.act``): B's parameters in A's unit order."""
        return self.group.act(self.element, state_dict)

    def apply_model(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` (model B) with its parameters moved into A's unit order."""
        out = copy.deepcopy(model)
        out.load_state_dict(self.apply(model.state_dict()))
        return out

    def __repr__(self) -> str:
        moved = sum(int((p != torch.arange(len(p))).sum()) for p in self.perms.values())
        return (
            f"Alignment({self.method}, {len(self.perms)} permutations, {moved} units moved, "
            f"objective={self.objective:.6g}, {len(self.trace)} trace points)"
        )

    @staticmethod
    def from_perms(
        group: SymmetryGroup,
        perms: Mapping[str, torch.Tensor],
        objective: float,
        trace: list[float] | None = None,
        method: str = "",
        info: dict[str, object] | None = None,
    ) -> Alignment:
        """Build an alignment from per-factor permutations (the rest of the group: identity)."""
        perms = {k: torch.as_tensor(v, dtype=torch.long) for k, v in perms.items()}
        return Alignment(
            group,
            perms,
            group.element(perms),
            float(objective),
            list(trace or [float(objective)]),
            method,
            dict(info or {}),
        )
