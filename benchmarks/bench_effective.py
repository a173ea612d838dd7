"""P6: the cross-run step of effective alignment for one 512-wide layer, k = 64, 5 000 points.

What :func:`symlab.align.effective_matching` does per layer, on two W-asymmetric layers A and B
(512 units, 512 inputs, 64 fixed entries per row, κ = 1) sharing a support of dimension 64:
A's function classes, B's realised coefficients, the cross-run costs (the move cost and the
class-centred ``C^{AB}`` for reachability), the assignment (scipy's LAP) and the least-norm
re-realisation of every moved function in its new slot. Goal (issue 12): under 1 s on one core.

Baseline: the same three steps the plain way — one least-squares solve per (i, j) pair for
the costs (timed on 200 pairs, extrapolated to all 512²), the same LAP, and one least-norm
solve per unit for the re-realisation — timed in the same process, one thread everywhere
(threadpoolctl), rounds interleaved.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from symlab.identify import function_classes_from_weights, min_cost_assignment, support
from symlab.nn import WAsymLinear

from .bench_identify import interleaved, one_thread, show

N_UNITS, D, K, SAMPLES = 512, 512, 64, 5000


def cross_run(s: object, a: WAsymLinear, b: WAsymLinear) -> tuple[np.ndarray, torch.Tensor]:
    """Costs, assignment and re-realisation, as effective matching runs them."""
    fc = function_classes_from_weights(a.weight, s, a.mask, a.fixed)
    a_b = fc.realized(b.weight, b.fixed)  # B's functions on the shared support
    reach = fc.cost(a_b)
    cost = fc.cost(a_b, centres=fc.a, reach=False).masked_fill(~torch.isfinite(reach), np.inf)
    perm, _ = min_cost_assignment(cost.numpy())
    return perm, fc.realizers(a_b[torch.from_numpy(perm)])


def run() -> None:
    torch.manual_seed(0)
    a = WAsymLinear(D, N_UNITS, num_fixed=64, kappa=1.0, seed=0, init_seed=0)
    b = WAsymLinear(D, N_UNITS, num_fixed=64, kappa=1.0, seed=0, init_seed=1)  # B: same masks
    x = torch.randn(SAMPLES, D, dtype=torch.float64)
    print(f"load average {os.getloadavg()[0]:.1f}; one thread for torch, BLAS and OpenMP")
    with one_thread():
        s = support(x, k=K)
        name = "support + costs + LAP + re-realisation"
        t = interleaved({name: lambda: cross_run(support(x, k=K), a, b)})
        U = s.U.numpy()
        Dm, F = a.mask.double().numpy(), a.fixed.double().numpy()
        Ab = ((b.fixed + b.mask * b.weight).detach().double() @ s.U).numpy()
        pairs = np.random.default_rng(0).integers(0, N_UNITS, size=(200, 2))
        t0 = time.perf_counter()
        for i, j in pairs:
            w, *_ = np.linalg.lstsq(U.T * Dm[i][None, :], Ab[j] - U.T @ F[i], rcond=None)
        t_costs = (time.perf_counter() - t0) / len(pairs) * N_UNITS**2
        perm, w_new = cross_run(s, a, b)
        fc = function_classes_from_weights(a.weight, s, a.mask, a.fixed)
        cost = fc.cost(torch.from_numpy(Ab), centres=fc.a, reach=False).numpy()
        t0 = time.perf_counter()
        linear_sum_assignment(cost)
        t_lap = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = np.empty_like(w_new.numpy())
        for i in range(N_UNITS):
            w, *_ = np.linalg.lstsq(U.T * Dm[i][None, :], Ab[perm[i]] - U.T @ F[i], rcond=None)
            ref[i] = w * Dm[i]
        t_real = time.perf_counter() - t0
    err = float(np.abs(ref - w_new.numpy()).max() / np.abs(ref).max())
    ours = statistics.median(t[name])
    base = t_costs + t_lap + t_real
    print(f"{name:<40} {show(t[name])}")
    print(
        f"goal < 1 s → ratio to goal {ours / 1.0:.2f}; per-pair baseline {base:.1f} s "
        f"(costs {t_costs:.1f} s extrapolated, LAP {t_lap:.2f} s, per-unit solves {t_real:.2f} s)"
        f" → {base / ours:,.0f}× faster"
    )
    print(
        f"re-realised weights equal per-unit least-norm solves: max relative difference {err:.1e}"
    )
