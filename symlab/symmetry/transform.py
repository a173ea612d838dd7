"""How one tensor's feature map ``x ↦ M P x + c`` moves parameter axes.

``perm[i]`` is the old index of new unit ``i``; ``scale`` is a vector (diagonal ``M``, signs
included), a matrix (GL) or None (identity); ``shift`` is None or a vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Transform"]


def _matmul_axis(x: torch.Tensor, mat: torch.Tensor, axis: int, left: bool) -> torch.Tensor:
    moved = x.movedim(axis, -1)
    out = moved @ mat.T if left else moved @ mat
    return out.movedim(-1, axis)


@dataclass(frozen=True)
class Transform:
    """The map ``x ↦ M P x + c`` of one tensor's feature axis.

    >>> t = Transform(perm=torch.tensor([2, 0, 1]), scale=torch.tensor([1.0, 2.0, -1.0]))
    >>> t.out(torch.tensor([10.0, 20.0, 30.0]), axis=0)  # permute, then scale
    tensor([ 30.,  20., -20.])
    >>> w, x = torch.randn(2, 3), torch.randn(3)
    >>> torch.allclose(t.contract(w, axis=1) @ t.out(x, axis=0), w @ x)  # the reader compensates
    True
    """

    perm: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    shift: torch.Tensor | None = None

    @property
    def is_identity(self) -> bool:
        return self.perm is None and self.scale is None and self.shift is None

    def out(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """Move an axis that carries this tensor's units forward: ``x ↦ M P x`` along ``axis``."""
        if self.perm is not None:
            x = x.index_select(axis, self.perm)
        if self.scale is not None:
            s = self.scale.to(x.dtype)
            if s.ndim == 2:
                x = _matmul_axis(x, s, axis, left=True)
            else:
                x = x * s.reshape([-1 if d == axis % x.ndim else 1 for d in range(x.ndim)])
        return x

    def contract(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """Move an axis that *reads* this tensor's units: ``W ↦ W (M P)⁻¹`` along ``axis``."""
        if self.perm is not None:
            x = x.index_select(axis, self.perm)
        if self.scale is not None:
            s = self.scale.to(x.dtype)
            if s.ndim == 2:
                x = _matmul_axis(x, torch.linalg.inv(s), axis, left=False)
            else:
                x = x / s.reshape([-1 if d == axis % x.ndim else 1 for d in range(x.ndim)])
        return x

    def sign(self) -> torch.Tensor | None:
        """The per-unit sign of a diagonal ``M`` (None when ``M`` is the identity)."""
        if self.scale is None:
            return None
        if self.scale.ndim != 1:
            raise ValueError("sign() is defined for diagonal transforms only")
        return torch.sign(self.scale)
