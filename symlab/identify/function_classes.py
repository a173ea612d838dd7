"""Effective function classes of units on their input support, with realisation and swap costs.

Bürgin, Herbst, Lin, Jegelka, "Beyond Structural Symmetries: Linear Mode Connectivity via Neuron
Identifiability" (ICML 2026). One form covers standard and W-asymmetric layers,
``W_eff = F + D ⊙ W`` (standard: F = 0, D = 1; Ziyin et al.'s syre: D = 1, F = κ·N). On the
support ``U`` (d × k):

- centre ``v_i = Uᵀ f_i``, operator ``M_i = Uᵀ Diag(d_i)``, Gram ``S_i = M_i M_iᵀ``;
- realised coefficients of unit ``j``: ``a_j = Uᵀ w_eff,j``;
- realisation cost ``C_ij = (a_j − v_i)ᵀ S_i⁺ (a_j − v_i)``, the least ``‖w‖²`` with
  ``Uᵀ(f_i + d_i ⊙ w) = a_j``; ``+inf`` when ``a_j − v_i`` lies outside ``im(M_i)``;
- swap cost ``T_ij = C_ij + C_ji − C_ii − C_jj``.

Everything is batched over units (one eigendecomposition per unit, no loop over pairs). A 0/1
mask row has few zeros (or few ones), so ``S_i = UᵀU − U_Zᵀ U_Z`` (``U_Z``: the rows of ``U`` at
the masked inputs) or ``S_i = U_Oᵀ U_O`` (the unmasked ones), whichever set is smaller, is
formed from a gather of at most ``d/2`` rows per unit instead of an (n, d, k) product.
Biases are not part of the function class (as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from symlab.errors import DataError
from symlab.identify.support import Support

__all__ = ["FunctionClasses", "function_classes_from_weights", "mask_grams"]


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
    _eig: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)  # (P, ok)
    _C: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.v.shape[0])

    @property
    def M(self) -> torch.Tensor:
        """Operators ``M_i = Uᵀ Diag(d_i)``, shape (n, k, d)."""
        return torch.einsum("ak,na->nka", self.support.U.double(), self.mask)

    def _spectral(self, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the given units: eigenvectors as rows ``Qᵀ`` (u, k, k), ``1/λ`` on the kept
        directions (λ > rtol · λ_max) and the kept mask."""
        lam, Q = torch.linalg.eigh(self.S[units])
        scale = lam.amax(dim=1, keepdim=True).clamp_min(1e-300)
        keep = lam > self.rtol * scale
        inv = torch.where(keep, 1.0 / lam.clamp_min(1e-300), torch.zeros_like(lam))
        return Q.transpose(1, 2), inv, keep

    def _inverse(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(P, ok)``: ``P_i = S_i⁻¹`` for the units ``ok`` whose Gram is certified well
        conditioned (Cholesky succeeds and ``‖S‖_F ‖S⁻¹‖_F < 1e8``, an upper bound on the
        condition number, so the pseudo-inverse with ``rtol`` cuts nothing); the others go
        through an eigendecomposition."""
        if self._eig is None:
            shared = bool((self.mask == self.mask[:1]).all())  # one Gram for every unit
            S = self.S[:1] if shared else self.S
            L, info = torch.linalg.cholesky_ex(S)
            ok = info == 0
            if bool(ok.all()):
                P = torch.cholesky_inverse(L)
            else:
                P = torch.zeros_like(S)
                if bool(ok.any()):
                    P[ok] = torch.cholesky_inverse(L[ok])
            cond = torch.linalg.matrix_norm(S) * torch.linalg.matrix_norm(P)
            ok &= torch.isfinite(cond) & (cond < 1e8)
            if not bool(ok.all()):
                P[~ok] = 0.0
            if shared:  # read-only views: nothing writes into P or ok afterwards
                P, ok = P.expand(self.n, -1, -1), ok.expand(self.n)
            self._eig = (P, ok)
        return self._eig

    def _solve(self, vecs: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per unit: ``S_i⁺ x_i`` for ``vecs`` (n, k) and whether ``x_i ∈ im(S_i)`` up to
        ``1e-9 · size_i`` (``size``: the squared scale of the vectors ``x_i`` was made from)."""
        P, ok = self._inverse()
        x = vecs.double()
        out = torch.matmul(P, x.unsqueeze(-1)).squeeze(-1)
        reach = torch.ones(self.n, dtype=torch.bool)
        bad = torch.nonzero(~ok).flatten()
        if len(bad):
            qt, inv, keep = self._spectral(bad)
            r = torch.matmul(qt, x[bad].unsqueeze(-1)).squeeze(-1)  # (u, k)
            out[bad] = torch.matmul(qt.transpose(1, 2), (r * inv).unsqueeze(-1)).squeeze(-1)
            resid = (r.square() * (~keep).double()).sum(-1)
            reach[bad] = resid <= 1e-9 * size[bad].clamp_min(1e-30)
        return out, reach

    def cost(
        self, targets: torch.Tensor, centres: torch.Tensor | None = None, *, reach: bool = True
    ) -> torch.Tensor:
        """``cost[i, j]``: least squared trainable norm for unit ``i`` to realise target
        ``targets[j]`` (coefficients on the support, shape (m, k)); ``+inf`` if unreachable.

        ``centres`` (n, k) replaces the class centres ``v``: ``cost[i, j]`` is then the least
        ``‖Δw‖²`` that moves unit ``i`` from the function ``centres[i]`` to ``targets[j]``.
        ``reach=False`` skips the range test: the quadratic form over the directions the unit
        can move in (the cost of the target's projection onto the class).

        Layers whose units share one mask (standard layers) use one quadratic form; otherwise
        units with a certified well-conditioned Gram use one matrix product for all pairs,
        ``C_ij = ⟨S_i⁻¹, t_j t_jᵀ⟩ − 2 (S_i⁻¹ c_i)ᵀ t_j + c_iᵀ S_i⁻¹ c_i``; the others an
        eigendecomposition with the range test.

        >>> from symlab.identify.support import support as supp
        >>> fc = function_classes_from_weights(torch.eye(2, 3), supp(torch.randn(50, 3), k=3))
        >>> [round(float(c), 6) for c in fc.cost(fc.a).flatten()]  # standard units: ‖a_j‖²
        [1.0, 1.0, 1.0, 1.0]
        """
        t = targets.double()
        k = self.v.shape[1]
        if t.ndim != 2 or t.shape[1] != k:
            raise DataError(
                f"targets must be (m, {k}) coefficients on the support, got {tuple(t.shape)}"
            )
        c0 = self.v if centres is None else centres.double()
        P, ok = self._inverse()
        if bool(ok.all()) and bool((self.mask == self.mask[:1]).all()):
            # one Gram for every unit (a standard layer: equal masks): one quadratic form,
            # C_ij = t_jᵀ P t_j − 2 c_iᵀ P t_j + c_iᵀ P c_i, with no per-unit (k × k) work
            tp, cp = t @ P[0], c0 @ P[0]
            tt, cc = (tp * t).sum(-1), (cp * c0).sum(-1)
            return torch.addmm(cc[:, None] + tt[None, :], cp, t.T, alpha=-2.0).clamp_min_(0.0)
        out = torch.empty(self.n, t.shape[0], dtype=torch.float64)
        if bool(ok.any()):
            every = bool(ok.all())
            Pg, cg = (P, c0) if every else (P[ok], c0[ok])
            iu = torch.triu_indices(k, k)
            flat = iu[0] * k + iu[1]  # symmetric packing: off-diagonal entries counted twice
            wts = torch.where(iu[0] == iu[1], 1.0, 2.0).double()
            packed = Pg.reshape(len(Pg), k * k).index_select(1, flat) * wts
            outer = t.index_select(1, iu[0]) * t.index_select(1, iu[1])  # (m, k(k+1)/2)
            pc = torch.matmul(Pg, cg.unsqueeze(-1)).squeeze(-1)  # (g, k)
            quad = torch.addmm((pc * cg).sum(-1, keepdim=True), packed, outer.T)
            quad.addmm_(pc, t.T, alpha=-2.0).clamp_min_(0.0)
            if every:
                return quad
            out[ok] = quad
        bad = torch.nonzero(~ok).flatten()
        if len(bad):
            qt, inv, keep = self._spectral(bad)
            r = torch.matmul(qt, t.T)  # (u, k, m): Qᵢᵀ t_j
            r -= torch.matmul(qt, c0[bad].unsqueeze(-1))  # − Qᵢᵀ c_i
            r.square_()
            c = torch.bmm(inv.unsqueeze(1), r).squeeze(1)  # Σ_k r²/λ over kept directions
            resid = torch.bmm((~keep).double().unsqueeze(1), r).squeeze(1)
            size = (t**2).sum(-1)[None, :] + (c0[bad] ** 2).sum(-1)[:, None]
            if reach:
                c.masked_fill_(resid > 1e-9 * size.clamp_min(1e-30), float("inf"))
            out[bad] = c
        return out

    def move_cost(self, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Per unit ``i``: the least ``‖Δw‖²`` moving its function from ``start[i]`` to
        ``end[i]`` inside its class, ``(e_i − s_i)ᵀ S_i⁺ (e_i − s_i)`` (``+inf`` if leaving it).

        >>> from symlab.identify.support import support as supp
        >>> fc = function_classes_from_weights(torch.eye(2, 3), supp(torch.randn(50, 3), k=3))
        >>> [round(float(c), 9) for c in fc.move_cost(fc.a, 2 * fc.a)]
        [1.0, 1.0]
        """
        for what, t in (("start", start), ("end", end)):
            if tuple(t.shape) != tuple(self.v.shape):
                raise DataError(f"{what} must have shape {tuple(self.v.shape)} (one row of support "
                                f"coefficients per unit), got {tuple(t.shape)}")  # fmt: skip
        delta = end.double() - start.double()
        y, reach = self._solve(delta, (end.double() ** 2 + start.double() ** 2).sum(-1))
        return (y * delta).sum(-1).clamp_min(0.0).masked_fill(~reach, float("inf"))

    def realizers(self, targets: torch.Tensor) -> torch.Tensor:
        """Least-norm trainable weights (n, d): row ``i`` realises ``targets[i]`` in unit ``i``'s
        class, ``w_i = Diag(d_i) U S_i⁺ (t_i − v_i)`` (zero on masked inputs). Where the target
        is unreachable this is the least-norm least-squares point (its residual is reported by
        :meth:`realized`).

        >>> from symlab.identify.support import support as supp
        >>> fc = function_classes_from_weights(torch.randn(3, 4), supp(torch.randn(50, 4), k=4))
        >>> torch.allclose(fc.realizers(fc.a), fc.a @ fc.support.U.T)  # standard: w = U a
        True
        """
        t = targets.double()
        if t.shape != self.v.shape:
            raise DataError(f"targets must have shape {tuple(self.v.shape)}, got {tuple(t.shape)}")
        y, _ = self._solve(t - self.v, (t**2 + self.v**2).sum(-1))
        return self.mask * (y @ self.support.U.double().T)

    def realized(self, weights: torch.Tensor, fixed: torch.Tensor | None = None) -> torch.Tensor:
        """Coefficients ``Uᵀ(f_i + d_i ⊙ w_i)`` of trainable ``weights`` (n, d) in these slots;
        ``fixed`` (n, d) is the layer's ``F`` (zero when None)."""
        for what, t in (("weights", weights), ("fixed", fixed)):
            if t is not None and tuple(t.shape) != tuple(self.mask.shape):
                raise DataError(f"{what} must have the layer's shape {tuple(self.mask.shape)} "
                                f"(units, inputs), got {tuple(t.shape)}")  # fmt: skip
        w_eff = self.mask * weights.detach().double()
        if fixed is not None:
            w_eff = w_eff + fixed.detach().double()
        return w_eff @ self.support.U.double()

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


def _gather_gram(U: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``Σ_{a ∈ idx_i} U_aᵀ U_a`` per row of ``idx`` (n, m), padded with the index ``d``."""
    Upad = torch.cat([U, U.new_zeros(1, U.shape[1])])
    rows = Upad[idx]  # (n, m, k)
    return torch.matmul(rows.transpose(1, 2), rows)


def _padded_indices(sel: torch.Tensor, d: int) -> torch.Tensor:
    """Column indices of the True entries of each row of ``sel`` (n, d), padded with ``d``."""
    m = int(sel.sum(1).max().item()) if sel.numel() else 0
    order = torch.argsort((~sel).to(torch.int8), dim=1, stable=True)[:, :m]
    taken = torch.gather(sel, 1, order)
    return torch.where(taken, order, torch.full_like(order, d))


def mask_grams(U: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``S_i = Uᵀ Diag(d_i) U`` for every row ``d_i`` of ``mask`` (n, d), shape (n, k, k).

    0/1 masks use a gather of the smaller of the masked / unmasked rows of ``U``
    (``S_i = UᵀU − U_Zᵀ U_Z`` or ``U_Oᵀ U_O``); other masks the direct product.

    >>> U = torch.linalg.qr(torch.randn(6, 3, dtype=torch.float64))[0]
    >>> mask = (torch.rand(4, 6) > 0.3).double()
    >>> direct = torch.einsum("ak,na,al->nkl", U, mask, U)
    >>> torch.allclose(mask_grams(U, mask), direct)
    True
    """
    U = U.double()
    k = U.shape[1]
    if mask is None:
        return (U.T @ U).expand(1, k, k)
    d = mask.double()
    n, dim = d.shape
    binary = bool(((d == 0) | (d == 1)).all())
    if not binary:
        return torch.matmul((d[:, :, None] * U[None]).transpose(1, 2), U)
    zeros = d == 0
    n_zero = int(zeros.sum(1).max().item()) if n else 0
    n_one = int((~zeros).sum(1).max().item()) if n else 0
    if n_zero <= n_one:
        full = U.T @ U
        if n_zero == 0:
            return full.expand(n, k, k).clone()
        return full - _gather_gram(U, _padded_indices(zeros, dim))
    return _gather_gram(U, _padded_indices(~zeros, dim))


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
        raise DataError(
            f"weight {tuple(w.shape)} does not read the support's {support.d} inputs: the "
            f"weight needs shape (units, {support.d}); compute the support from this layer's "
            "inputs"
        )
    for name, t in (("mask", mask), ("fixed", fixed)):
        if t is not None and tuple(t.shape) != tuple(w.shape):
            raise DataError(f"{name} has shape {tuple(t.shape)}; it must match the weight's "
                            f"{tuple(w.shape)}")  # fmt: skip
    d = torch.ones_like(w) if mask is None else mask.detach().double()
    U = support.U.double()
    S = mask_grams(U, None if mask is None else d)
    if mask is None:
        S = S.expand(w.shape[0], -1, -1).clone()
    w_eff = d * w
    if fixed is None:
        v = w.new_zeros(w.shape[0], U.shape[1])
    else:
        f = fixed.detach().double()
        v = f @ U  # (n, k)
        w_eff = w_eff + f
    a = w_eff @ U
    return FunctionClasses(support, v, d, S, a)
