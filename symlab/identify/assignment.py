"""Assignments under a realisation cost, and how much it costs to move each unit.

For a cost matrix ``C`` (``C[i, j]``: slot ``i`` holding unit ``j``'s function; ``+inf`` where
it cannot) a permutation ``π`` costs ``Σ_i C[i, π(i)]``. Its *excess* over the identity is
``Δ(π) = Σ_i (C[i, π(i)] − C[i, i])``. A unit's *margin* is the least excess of a permutation
that moves it — positive means every such permutation costs more than the identity, the
definition of an identifiable unit (Bürgin, Herbst, Lin, Jegelka, ICML 2026).

Margins are exact. When the identity is an optimal assignment, ``Δ`` has no negative cycle, so
the cheapest permutation moving ``u`` is the cheapest cycle through ``u`` in the graph with
edge weights ``R[i, j] = C[i, j] − C[i, i]``: one all-pairs shortest-path solve
(:func:`scipy.sparse.csgraph.floyd_warshall`, every edge raised by ``δ = 1e-12 · max|C|`` so
that cycles of zero cost up to rounding do not count as negative) gives all margins. When it is
not, with ``π*`` an optimal assignment: a unit ``π*`` moves has margin ``cost(π*) − cost(id)``;
for a unit it fixes, the permutations moving it are ``π*∘σ`` with ``σ`` moving it, and under
``C'[i, j] = C[i, π*(j)]`` the identity is optimal again — one more shortest-path solve. One
assignment problem per unit (its diagonal entry forbidden,
:func:`scipy.optimize.linear_sum_assignment`) is the fallback and ``method="lap"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from symlab.errors import ArgumentError, DataError

__all__ = ["AssignmentMargins", "min_cost_assignment", "permutation_margins"]


def min_cost_assignment(cost: np.ndarray | torch.Tensor) -> tuple[np.ndarray, float]:
    """The permutation ``p`` minimising ``Σ_i cost[i, p[i]]`` (``+inf`` entries forbidden) and
    its value; ``inf`` when no finite assignment exists.

    >>> p, v = min_cost_assignment(np.array([[2.0, 1.0], [1.0, 3.0]]))
    >>> p.tolist(), v
    ([1, 0], 2.0)
    """
    from scipy.optimize import linear_sum_assignment

    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise DataError(f"an assignment needs a square cost matrix, got shape {c.shape}")
    finite = np.isfinite(c)
    if not finite.any():
        return np.arange(c.shape[0]), float("inf")
    big = (np.abs(c[finite]).max() + 1.0) * (c.shape[0] + 1) * 4.0
    _, cols = linear_sum_assignment(np.where(finite, c, big))
    if not finite[np.arange(len(cols)), cols].all():
        return cols, float("inf")
    return cols, float(c[np.arange(len(cols)), cols].sum())


@dataclass(frozen=True)
class AssignmentMargins:
    """Optimal assignment under a cost matrix and every unit's margin (see module doc).

    Attributes:
        perm: an optimal assignment (``perm[i]``: the unit slot ``i`` takes).
        (When the identity itself is infeasible every margin is ``-inf``.)
        identity: cost of the identity; optimal: of ``perm``.
        margins: (n,) least excess of a permutation moving each unit (``inf``: none exists).
        method: ``"cycles"`` (shortest paths) or ``"lap"`` (one assignment per unit).

    >>> m = permutation_margins(np.array([[1.0, 3.0], [4.0, 1.0]]))
    >>> m.perm.tolist(), m.margins.round(6).tolist(), m.identity_optimal
    ([0, 1], [5.0, 5.0], True)
    """

    perm: np.ndarray
    identity: float
    optimal: float
    margins: np.ndarray
    method: str

    @property
    def identity_optimal(self) -> bool:
        """Whether the identity is an optimal assignment (up to rounding)."""
        scale = max(1.0, abs(self.identity))
        return bool(self.identity - self.optimal <= 1e-9 * scale)


def _lap_margins(c: np.ndarray, tol: float) -> np.ndarray:
    n = c.shape[0]
    ident = float(np.trace(c))
    out = np.empty(n)
    for u in range(n):
        cu = c.copy()
        cu[u, u] = np.inf
        _, val = min_cost_assignment(cu)
        out[u] = val - ident
    return out


def _cycle_margins(c: np.ndarray) -> np.ndarray | None:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import NegativeCycleError, floyd_warshall

    r = c - np.diag(c)[:, None]  # R[i, j] = C[i, j] − C[i, i]: slot i switching to unit j
    np.fill_diagonal(r, np.inf)
    finite = np.isfinite(r)
    # every edge gets δ: cycles that are zero up to rounding (all swaps of a standard layer)
    # stay ≥ 0; a margin is overestimated by at most n·δ
    delta = 1e-12 * max(1.0, float(np.abs(c[np.isfinite(c)]).max(initial=0.0)))
    rows, cols = np.nonzero(finite)  # a sparse graph keeps every edge, however small
    w = csr_matrix((r[rows, cols] + delta, (rows, cols)), shape=r.shape)
    try:
        dist = floyd_warshall(w, directed=True)
    except NegativeCycleError:
        return None
    # cheapest cycle through u: an edge u → j, then the shortest path j → u
    return np.min(np.where(finite, r, np.inf) + dist.T, axis=1)


def permutation_margins(
    cost: np.ndarray | torch.Tensor, *, method: str = "auto"
) -> AssignmentMargins:
    """Optimal assignment and per-unit margins of a square cost matrix (see module doc).

    ``method``: ``"auto"`` or ``"cycles"`` (shortest cycles, re-based on the optimum when the
    identity is not optimal; ``"auto"`` falls back to per-unit assignments if that solve fails)
    or ``"lap"`` (one assignment per unit).

    >>> c = np.array([[1.0, 1.0, 9.0], [1.0, 1.0, 9.0], [9.0, 9.0, 0.0]])
    >>> m = permutation_margins(c)  # units 0 and 1 swap for free; unit 2 is identifiable
    >>> m.margins.round(6).tolist()
    [0.0, 0.0, 17.0]
    """
    c = np.asarray(cost, dtype=np.float64)
    perm, optimal = min_cost_assignment(c)
    ident = float(np.trace(c))
    n = c.shape[0]
    if not np.isfinite(ident):  # some slot cannot hold its own unit: any finite move is better
        return AssignmentMargins(perm, ident, optimal, np.full(n, -np.inf), "none")
    if n < 2:
        return AssignmentMargins(perm, ident, optimal, np.full(n, np.inf), "none")
    if method not in ("auto", "cycles", "lap"):
        raise ArgumentError(f"method must be 'auto', 'cycles' or 'lap', got {method!r}")
    scale = max(1.0, abs(ident))
    margins = None
    used = "lap"
    if method != "lap":
        if ident - optimal <= 1e-9 * scale:
            margins = _cycle_margins(c)
        else:  # re-base on the optimum: σ ↦ π*∘σ has the identity optimal (see module doc)
            rebased = _cycle_margins(c[:, perm])
            if rebased is not None:
                moved = perm != np.arange(n)
                margins = np.where(moved, optimal - ident, optimal + rebased - ident)
        used = "cycles"
    if margins is None:
        if method == "cycles":
            raise DataError("the shortest-cycle solve failed (a negative cycle); use method='lap'")
        margins = _lap_margins(c, 1e-9 * scale)
        used = "lap"
    return AssignmentMargins(perm, ident, optimal, margins, used)
