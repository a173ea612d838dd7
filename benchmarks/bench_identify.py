"""P5: realisation cost C and swap cost T for a 512-wide W-asymmetric layer, k = 64, 5 000 points.

Goals (issue 17, item 4): C and T under 0.15 s on one core (the mask rows have few zeros, so
``S_i = UᵀU − U_Zᵀ U_Z`` is formed from a gather instead of an (n, d, k) product, and C for all
pairs is one matrix product of the Grams' inverses); the support through the ``d × d`` Gram's
eigendecomposition instead of a thin SVD of the 5 000 × 512 inputs.

Baselines, timed in the same process with rounds interleaved (one thread for torch, BLAS and
OpenMP, set with threadpoolctl and restored): the previous implementation (the (n, d, k) Gram
and a batched eigendecomposition for every unit), the thin SVD, and a per-pair least-squares
loop (one least-norm solve per (i, j) pair, timed on 200 pairs and extrapolated to all 512²).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from symlab.identify import function_classes_from_weights, support
from symlab.nn import WAsymLinear

N_UNITS, D, K, SAMPLES = 512, 512, 64, 5000


def one_thread() -> object:
    """A context that runs torch, BLAS and OpenMP on one thread and restores them after."""
    from contextlib import contextmanager

    from threadpoolctl import threadpool_limits

    @contextmanager
    def ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(1):
                yield
        finally:
            torch.set_num_threads(before)

    return ctx()


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, list[float]]:
    """Wall times of every function over ``rounds``, alternating within each round."""
    for fn in fns.values():
        fn()  # warm-up
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


def show(times: list[float]) -> str:
    return f"{statistics.median(times):7.3f} s [{min(times):.3f}–{max(times):.3f}]"


def previous_costs(layer: WAsymLinear, s: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The implementation before issue 17: the (n, d, k) Gram and an eigendecomposition per
    unit, all pairs through an (n, k, m) temporary."""
    w, d, f = layer.weight.double(), layer.mask.double(), layer.fixed.double()
    U = s.U.double()
    v = f @ U
    S = torch.matmul((d[:, :, None] * U[None]).transpose(1, 2), U)
    a = (f + d * w) @ U
    lam, Q = torch.linalg.eigh(S)
    keep = lam > 1e-9 * lam.amax(1, keepdim=True)
    qt = Q.transpose(1, 2)
    r = torch.matmul(qt, a.T) - torch.matmul(qt, v.unsqueeze(-1))
    r.square_()
    inv = torch.where(keep, 1.0 / lam.clamp_min(1e-300), torch.zeros_like(lam))
    C = torch.bmm(inv.unsqueeze(1), r).squeeze(1)
    dg = torch.diagonal(C)
    return C, C + C.T - dg[:, None] - dg[None, :]


def run() -> None:
    torch.manual_seed(0)
    layer = WAsymLinear(D, N_UNITS, num_fixed=64, kappa=1.0, seed=0, init_seed=0)
    x = torch.randn(SAMPLES, D, dtype=torch.float64)
    print(f"load average {os.getloadavg()[0]:.1f}; one thread for torch, BLAS and OpenMP")
    with one_thread():
        s = support(x, k=K)

        def symlab_ct() -> None:
            fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
            fc.realization_cost()
            fc.swap_cost()

        def svd() -> None:
            xc = x - x.mean(0)
            torch.linalg.svd(xc, full_matrices=False)

        t = interleaved(
            {
                "support (Gram eigh)": lambda: support(x, k=K),
                "support (thin SVD, before)": svd,
                "C and T": symlab_ct,
                "C and T (previous)": lambda: previous_costs(layer, s),
            }
        )
        fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
        C, T = fc.realization_cost(), fc.swap_cost()
        C0, _ = previous_costs(layer, s)
        fin = torch.isfinite(C0)
        err = float(((C - C0)[fin].abs() / C0[fin].abs().clamp_min(1e-12)).max())
        U = s.U.numpy()
        Dm, F, A = layer.mask.double().numpy(), layer.fixed.double().numpy(), fc.a.numpy()
        pairs = np.random.default_rng(0).integers(0, N_UNITS, size=(200, 2))
        t0 = time.perf_counter()
        for i, j in pairs:
            M = U.T * Dm[i][None, :]
            w, *_ = np.linalg.lstsq(M, A[j] - U.T @ F[i], rcond=None)
            float(w @ w)
        t_loop = (time.perf_counter() - t0) / len(pairs) * N_UNITS * N_UNITS
    for k, v in t.items():
        print(f"{k:<30} {show(v)}")
    ct, prev = statistics.median(t["C and T"]), statistics.median(t["C and T (previous)"])
    sup, sv = (
        statistics.median(t["support (Gram eigh)"]),
        statistics.median(t["support (thin SVD, before)"]),
    )
    print(
        f"C and T: goal < 0.15 s → ratio to goal {ct / 0.15:.2f}; {prev / ct:.1f}× faster than "
        f"before; {t_loop / ct:,.0f}× the per-pair lstsq loop (extrapolated {t_loop:.1f} s)"
    )
    print(f"support: {sv / sup:.1f}× faster than the thin SVD")
    print(
        f"equal to the previous implementation: max relative difference of C {err:.1e}; "
        f"finite C entries {int(torch.isfinite(C).sum())}/{N_UNITS**2}, T {tuple(T.shape)}"
    )
