"""Exact function classes of ReLU units on a finite support — beyond the linearised classes of
Bürgin et al. (2026).

On finite inputs ``X`` (N × d) a ReLU unit with parameters ``(w, b)`` realises the values
``y_n = max(0, w·x_n + b)``. The parameters realising *exactly* these values form a polyhedron

    P = {(w', b') : w'·x_n + b' = y_n for active n (y_n > 0),  w'·x_n + b' ≤ 0 for the others}.

:func:`relu_realizers` computes the least-norm element of ``P`` (min ‖w'‖² + ‖b'‖², a convex QP
solved with scipy's SLSQP in the null-space coordinates of the equalities) and measures the size
of ``P``: ``dimension`` is the dimension of the affine hull of the equalities (the number of free
directions along which realisers can move while the inactive constraints stay satisfied, when
they hold strictly), and ``face_dimension`` that of the face containing the least-norm realiser
(equalities plus the inactive constraints tight there). ``dimension > 0`` means a continuum of
parameters computes the same function on the data: an effective symmetry that no structural
group contains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from symlab.errors import DataError

__all__ = ["ReluRealizers", "relu_realizers"]


@dataclass(frozen=True)
class ReluRealizers:
    """The set of exact realisers of one ReLU unit on a finite support (see module doc).

    >>> X = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    >>> r = relu_realizers(X, np.array([1.0, 5.0]), 0.0)
    >>> r.w.shape, r.dimension, r.n_active, r.max_violation < 1e-9
    ((2,), 1, 2, True)
    """

    w: np.ndarray  # least-norm weights
    b: float  # least-norm bias
    norm_sq: float  # ‖w‖² + b² of the least-norm realiser
    original_norm_sq: float  # ‖w‖² + b² of the given parameters
    dimension: int  # dim of the affine hull of the equality constraints
    face_dimension: int  # dim of the face containing the least-norm realiser
    n_active: int
    n_tight: int  # inactive points on the boundary at the least-norm realiser
    max_violation: float  # of the returned realiser (≈ 0 when the solve succeeded)


def relu_realizers(
    X: torch.Tensor | np.ndarray, w: torch.Tensor | np.ndarray, b: float, *, tol: float = 1e-9
) -> ReluRealizers:
    """Least-norm exact realiser and size of the realiser set of ``relu(X w + b)`` on ``X``.

    >>> X = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
    >>> r = relu_realizers(X, np.array([1.0, 5.0]), 0.0)  # the second input is always 0
    >>> r.dimension, round(r.norm_sq, 6)
    (1, 1.0)
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[1] != w.shape[0]:
        raise DataError(f"X must be (N, {w.shape[0]}), got {X.shape}")
    z = X @ w + b
    y = np.maximum(z, 0.0)
    active = z > tol * max(1.0, float(np.abs(z).max(initial=0.0)))
    Xa = np.hstack([X[active], np.ones((int(active.sum()), 1))])
    Xi = np.hstack([X[~active], np.ones((int((~active).sum()), 1))])
    d1 = X.shape[1] + 1
    if Xa.shape[0]:
        z0, *_ = np.linalg.lstsq(Xa, y[active], rcond=None)
        from scipy.linalg import null_space  # here: scipy.linalg costs import time

        N = null_space(Xa)
    else:
        z0, N = np.zeros(d1), np.eye(d1)

    def objective(t: np.ndarray) -> tuple[float, np.ndarray]:
        v = z0 + N @ t
        return float(v @ v), 2 * N.T @ v

    if N.shape[1] == 0:
        best = z0
    else:
        cons = [] if Xi.shape[0] == 0 else [{
            "type": "ineq", "fun": lambda t: -(Xi @ (z0 + N @ t)), "jac": lambda t: -(Xi @ N)
        }]  # fmt: skip
        t0 = np.linalg.lstsq(N, np.append(w, b) - z0, rcond=None)[0]  # the given realiser
        from scipy.optimize import minimize  # here: scipy.optimize costs import time

        res = minimize(objective, t0, jac=True, constraints=cons, method="SLSQP",
                                      options={"ftol": 1e-12, "maxiter": 500})  # fmt: skip
        best = z0 + N @ res.x
    viol = max(
        float(np.abs(Xa @ best - y[active]).max(initial=0.0)),
        float((Xi @ best).max(initial=0.0)),
    )
    scale = max(1.0, float(np.abs(Xi).max(initial=0.0)) * float(np.abs(best).max()))
    tight = Xi[np.abs(Xi @ best) <= 1e-7 * scale] if Xi.shape[0] else Xi
    face = np.vstack([Xa, tight]) if tight.shape[0] else Xa
    face_dim = d1 - (np.linalg.matrix_rank(face) if face.shape[0] else 0)
    return ReluRealizers(
        w=best[:-1], b=float(best[-1]), norm_sq=float(best @ best),
        original_norm_sq=float(w @ w + b * b), dimension=int(N.shape[1]),
        face_dimension=int(face_dim), n_active=int(active.sum()), n_tight=int(tight.shape[0]),
        max_violation=viol,
    )  # fmt: skip
