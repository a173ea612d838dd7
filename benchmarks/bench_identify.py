"""P5: realisation cost C and swap cost T for a 512-wide layer, k = 64, 5 000 points.

Goal: under 1 s. Baseline: a per-pair loop (one least-norm solve per (i, j) pair), timed on a
sample of pairs and extrapolated to all 512² pairs.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from symlab.identify import function_classes_from_weights, support
from symlab.nn import WAsymLinear


def run() -> None:
    torch.manual_seed(0)
    n, d, k, samples = 512, 512, 64, 5000
    layer = WAsymLinear(d, n, num_fixed=64, kappa=1.0, seed=0, init_seed=0)
    x = torch.randn(samples, d, dtype=torch.float64)
    t0 = time.perf_counter()
    s = support(x, k=k)
    t_support = time.perf_counter() - t0
    t0 = time.perf_counter()
    fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
    C = fc.realization_cost()
    T = fc.swap_cost()
    t_batched = time.perf_counter() - t0
    U = s.U.numpy()
    D, F, A = layer.mask.double().numpy(), layer.fixed.double().numpy(), fc.a.numpy()
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, n, size=(200, 2))
    t0 = time.perf_counter()
    for i, j in pairs:
        M = U.T * D[i][None, :]
        w, *_ = np.linalg.lstsq(M, A[j] - U.T @ F[i], rcond=None)
        float(w @ w)
    per_pair = (time.perf_counter() - t0) / len(pairs)
    t_loop = per_pair * n * n
    print(f"support (SVD of 5000x512)         {t_support:8.3f} s")
    print(
        f"C and T batched (n=512, k=64)    {t_batched:8.3f} s   goal < 1 s: ratio {t_batched:.2f}"
    )
    print(
        f"per-pair lstsq loop (extrapolated){t_loop:8.1f} s   speed-up {t_loop / t_batched:,.0f}x"
    )
    print(f"finite C entries: {int(torch.isfinite(C).sum())}/{n * n}, T shape {tuple(T.shape)}")
