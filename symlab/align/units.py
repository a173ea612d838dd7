"""Where each unit of a permutation factor lives along the parameter axes it moves.

A factor's ``axes`` lists ``(state_dict key, axis)`` pairs. Along a plain axis unit ``i`` is
position ``i``; along an axis that reads a *block* tensor (a concatenation, or a flatten after a
convolution) the factor owns only some positions, each unit ``repeat`` consecutive ones. The
layout is read off the group's own per-tensor maps (:meth:`SymmetryGroup.tensor_transforms`), so
matching and ``G.act`` agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from symlab.errors import StateDictError
from symlab.symmetry.factors import Factor
from symlab.symmetry.group import SymmetryGroup

__all__ = ["FactorAxis", "factor_axes", "matchable_factors", "position_perm"]


@dataclass(frozen=True)
class FactorAxis:
    """One parameter axis moved by a permutation factor.

    ``positions`` are the axis positions the factor owns, unit-major (unit ``u`` owns
    ``positions[u * repeat : (u + 1) * repeat]``); ``plain`` when they are simply ``0..n-1``.
    """

    key: str
    axis: int
    factor: str
    positions: torch.Tensor
    repeat: int
    length: int

    @property
    def plain(self) -> bool:
        return self.repeat == 1 and self.length == len(self.positions)


def matchable_factors(G: SymmetryGroup) -> list[Factor]:
    """The permutation factors alignment solves for: on graph tensors (attention-head
    permutations inside one op are left at the identity), with more than one unit."""
    return [
        f
        for f in G.factors
        if f.kind == "permutation" and not f.internal and int(f.size) > 1 and f.axes
    ]


def position_perm(fa: FactorAxis, perm: torch.Tensor) -> torch.Tensor:
    """The index map along ``fa``'s whole axis that the unit permutation ``perm`` induces."""
    if fa.plain:
        return perm
    r = fa.repeat
    idx = (perm[:, None] * r + torch.arange(r)).reshape(-1)
    out = torch.arange(fa.length)
    out[fa.positions] = fa.positions[idx]
    return out


def factor_axes(G: SymmetryGroup, *, params_only: bool = True) -> dict[str, list[FactorAxis]]:
    """Per matchable factor, the axes it moves (``params_only``: trainable parameters only,
    as in Git Re-Basin, whose objective leaves BatchNorm statistics out)."""
    keys = G.graph.state_keys()
    out: dict[str, list[FactorAxis]] = {}
    for f in matchable_factors(G):
        n = int(f.size)
        probe = torch.roll(torch.arange(n), 1)
        maps = G.tensor_transforms({f.space: probe}, {})
        lst = []
        for key, axis in f.axes:
            node, spec = keys[key]
            if params_only and spec.kind != "param":
                continue
            role = spec.axes[axis]
            tensor = node.name if role == "out" else G.graph.inputs(node.name)[0]
            full = maps[tensor].perm
            length = int(spec.shape[axis])
            if full is None or len(full) != length:
                raise StateDictError(
                    f"cannot locate the units of {f.name} along {key} axis {axis}; "
                    "this layout is not supported by alignment"
                )
            if length == n:
                pos, r = torch.arange(n), 1
            else:  # a block tensor: the factor owns the positions the probe moved
                pos = torch.nonzero(full != torch.arange(length)).flatten()
                r = len(pos) // n
                if r * n != len(pos):
                    raise StateDictError(f"{f.name}: irregular block layout along {key}:{axis}")
            lst.append(FactorAxis(key, axis, f.name, pos, r, length))
        if lst:
            out[f.name] = lst
    return out
