"""Effective function classes of units on their input support, with realisation and swap costs.

Bürgin, Herbst, Lin, Jegelka, "Beyond Structural Symmetries: Linear Mode Connectivity via Neuron
Identifiability" (ICML 2026). One form covers standard and W-asymmetric layers,
``W_eff = F + D ⊙ W`` (standard: F = 0, D = 1). On the support ``U`` (d × k):

- centre ``v_i = Uᵀ f_i``, operator ``M_i = Uᵀ Diag(d_i)``, Gram ``S_i = M_i M_iᵀ``;
- realised coefficients of unit ``j``: ``a_j = Uᵀ w_eff,j``;
- realisation cost ``C_ij = (a_j − v_i)ᵀ S_i⁺ (a_j − v_i)``, the least ``‖w‖²`` with
  ``Uᵀ(f_i + d_i ⊙ w) = a_j``; ``+inf`` when ``a_j − v_i`` lies outside ``im(M_i)``;
- swap cost ``T_ij = C_ij + C_ji − C_ii − C_jj``.

Everything is batched over units (one eigendecomposition per unit, no loop over pairs).
Biases are not part of the function class (as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from symlab.errors import DataError
from symlab.identify.support import Support

__all__ = ["FunctionClasses", "function_classes_from_weights"]


@dataclass
class FunctionClasses:
    """Per-unit classes of one layer on a support (see the module docstring).

    Attributes:
        support: the input support.
        v: (n, k) centres.
        mask: (n, d) the 0/1 mask D.
        S: (n, k, k) Grams.
        a: (n, k) realised coefficients of the trained units.
        rtol: relative eigenvalue cut for ``S⁺``.

    The operators ``M`` (n, k, d) are computed on demand.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([5, 8, 2], seed=0)
    >>> fc = sl.identify.function_classes(net, torch.randn(64, 5), "layers.0.linear", k=3)
    >>> tuple(fc.v.shape), tuple(fc.mask.shape), tuple(fc.S.shape)
    ((8, 3), (8, 5), (8, 3, 3))
    """

    support: Support
    v: torch.Tensor
    mask: torch.Tensor
    S: torch.Tensor
    a: torch.Tensor
    rtol: float = 1e-9
    _eig: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _C: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.v.shape[0])

    @property
    def M(self) -> torch.Tensor:
        """Operators ``M_i = Uᵀ Diag(d_i)``, shape (n, k, d)."""
        return torch.einsum("ak,na->nka", self.support.U.double(), self.mask)

    def _spectral(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._eig is None:
            lam, Q = torch.linalg.eigh(self.S)
            self._eig = (lam, Q)
        return self._eig

    def cost(self, targets: torch.Tensor) -> torch.Tensor:
        """``cost[i, j]``: least squared trainable norm for unit ``i`` to realise target
        ``targets[j]`` (coefficients on the support, shape (m, k)); ``+inf`` if unreachable."""
        lam, Q = self._spectral()  # (n, k), (n, k, k)
        t = targets.double()
        scale = lam.amax(dim=1, keepdim=True).clamp_min(1e-300)
        keep = lam > self.rtol * scale  # (n, k)
        qt = Q.transpose(1, 2)  # (n, k, k): rows are eigenvectors
        r = torch.matmul(qt, t.T)  # (n, k, m): Qᵢᵀ t_j
        r -= torch.matmul(qt, self.v.unsqueeze(-1))  # − Qᵢᵀ v_i
        r.square_()
        inv = torch.where(keep, 1.0 / lam.clamp_min(1e-300), torch.zeros_like(lam))
        c = torch.bmm(inv.unsqueeze(1), r).squeeze(1)  # Σ_k r²/λ over kept directions
        resid = torch.bmm((~keep).double().unsqueeze(1), r).squeeze(1)
        size = (t**2).sum(-1)[None, :] + (self.v**2).sum(-1)[:, None]
        unreachable = resid > 1e-9 * size.clamp_min(1e-30)
        return c.masked_fill_(unreachable, float("inf"))

    def realization_cost(self) -> torch.Tensor:
        """The matrix ``C`` (n × n): unit ``i`` realising unit ``j``'s function."""
        if self._C is None:
            self._C = self.cost(self.a)
        return self._C.clone()

    def swap_cost(self) -> torch.Tensor:
        """``T_ij = C_ij + C_ji − C_ii − C_jj`` (inf where a swap is unreachable)."""
        C = self.realization_cost()
        d = torch.diagonal(C)
        return C + C.T - d[:, None] - d[None, :]


def function_classes_from_weights(
    weight: torch.Tensor,
    support: Support,
    mask: torch.Tensor | None = None,
    fixed: torch.Tensor | None = None,
) -> FunctionClasses:
    """Function classes of a layer with trainable ``weight`` (n × d), 0/1 ``mask`` D and fixed
    values F (both n × d; None for a standard layer), on ``support``.

    >>> from symlab.identify.support import support as supp
    >>> s = supp(torch.randn(100, 3), k=3)
    >>> fc = function_classes_from_weights(torch.ones(2, 3), s)
    >>> bool(fc.swap_cost().abs().max() < 1e-9)
    True
    """
    w = weight.detach().double()
    if w.ndim != 2 or w.shape[1] != support.d:
        raise DataError(f"weight {tuple(w.shape)} does not read the support's {support.d} inputs")
    d = torch.ones_like(w) if mask is None else mask.detach().double()
    f = torch.zeros_like(w) if fixed is None else fixed.detach().double()
    U = support.U.double()
    w_eff = f + d * w
    v = f @ U  # (n, k)
    S = torch.matmul((d[:, :, None] * U[None]).transpose(1, 2), U)  # Uᵀ Diag(d_i) U, d_i 0/1
    a = w_eff @ U
    return FunctionClasses(support, v, d, S, a)
