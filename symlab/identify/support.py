"""The input support of a layer: top principal directions of its centred inputs, and their
coherence (Bürgin, Herbst, Lin, Jegelka, ICML 2026; docs/concepts/identifiability.md)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from symlab.errors import ArgumentError, DataError, NonFiniteError

__all__ = ["Support", "coherence", "support"]


@dataclass(frozen=True)
class Support:
    """``U`` (d × k, orthonormal columns), the explained variance reached, and ν(U).

    >>> s = support(torch.randn(100, 3), k=2)
    >>> tuple(s.U.shape), s.k, s.d, torch.allclose(s.U.T @ s.U, torch.eye(2, dtype=s.U.dtype))
    ((3, 2), 2, 3, True)
    """

    U: torch.Tensor
    explained_variance: float
    coherence: float
    spectrum: torch.Tensor  # variance along every principal direction, descending

    @property
    def k(self) -> int:
        return int(self.U.shape[1])

    @property
    def d(self) -> int:
        return int(self.U.shape[0])


def coherence(U: torch.Tensor) -> float:
    """ν(U) = max_a ‖U_{a,:}‖², in [k/d, 1] for orthonormal columns.

    >>> coherence(torch.eye(4)[:, :2])
    1.0
    """
    return float((U**2).sum(1).max())


def support(
    activations: torch.Tensor, explained_variance: float = 0.9, *, k: int | None = None
) -> Support:
    """The smallest set of principal directions of the centred ``activations`` (N × d) that
    explains at least ``explained_variance`` of their variance (or exactly ``k`` of them).

    With at least ``2d`` samples the directions come from the eigendecomposition of the
    ``d × d`` Gram ``XᵀX`` (a thin SVD of ``X`` otherwise); they agree up to signs and rotations
    within repeated eigenvalues, which no cost depends on.

    >>> x = torch.randn(200, 2) @ torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    >>> s = support(x, 0.99); s.k, round(s.coherence, 6)
    (2, 1.0)
    """
    if activations.ndim != 2:
        raise DataError(f"activations must be (samples, features), got {tuple(activations.shape)}")
    if activations.shape[0] < 2:
        raise DataError("need at least 2 samples to estimate a support")
    if not bool(torch.isfinite(activations).all()):
        raise NonFiniteError("activations contain NaN or infinity")
    if not 0 < explained_variance <= 1:
        raise ArgumentError(f"explained_variance must lie in (0, 1], got {explained_variance}")
    x = activations.double()
    x = x - x.mean(0, keepdim=True)
    n, d = x.shape
    if n >= 2 * d:  # tall: the d × d Gram's eigendecomposition is far cheaper than a thin SVD
        lam, vecs = torch.linalg.eigh(x.T @ x)
        lam, vecs = lam.flip(0).clamp_min(0.0), vecs.flip(1)
        vh, var = vecs.T, lam / (n - 1)
    else:
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        var = s**2 / (n - 1)
    total = float(var.sum())
    if total <= 0:
        raise DataError("the activations are constant: their support is empty")
    frac = torch.cumsum(var, 0) / total
    if k is None:
        target = torch.tensor(explained_variance - 1e-12, dtype=frac.dtype)  # not float32
        k = int(torch.searchsorted(frac, target).item()) + 1
    k = max(1, min(k, vh.shape[0]))
    U = vh[:k].T.contiguous()
    return Support(U, float(frac[k - 1]), coherence(U), var)
