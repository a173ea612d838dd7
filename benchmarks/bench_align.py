"""P2: weight matching on a 3×512 MLP (MNIST-1D shaped, 40-512-512-512-10).

symlab's ``weight_matching`` against (a) a plain scipy transcription of Git Re-Basin's loop
(Ainsworth et al. 2023, ``src/weight_matching.py``) written below, and (b) snimu/rebasin's
``PermutationCoordinateDescent`` when the bench-only ``rebasin`` package is installed. Same two
models, same objective ``Σ ⟨w_A, w_B aligned⟩`` (evaluated identically for every method).
"""

from __future__ import annotations

import copy
import itertools
import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

import symlab as sl
from symlab.align import weight_matching

WIDTHS = [40, 512, 512, 512, 10]


def make(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(WIDTHS)):
        layers.append(nn.Linear(a, b))
        if i < len(WIDTHS) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def trained_pair() -> tuple[nn.Module, nn.Module, str]:
    """Two briefly trained MLPs on MNIST-1D (random ones if the data set is unavailable)."""
    try:
        from symlab.data import load

        ds = load("mnist1d", seed=0)
    except Exception as e:  # pragma: no cover - data module missing
        return make(0), make(1), f"random init ({type(e).__name__})"
    out = []
    for seed in (0, 1):
        net = make(seed)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(2):
            for idx in torch.randperm(ds.n_train, generator=g).split(128):
                opt.zero_grad()
                nn.functional.cross_entropy(net(ds.x_train[idx]), ds.y_train[idx]).backward()
                opt.step()
        out.append(net.eval())
    return out[0], out[1], "2 epochs of Adam on MNIST-1D"


def gr_transcription(spec, params_a, params_b, max_iter=100, seed=0):
    """Git Re-Basin's ``weight_matching`` loop, transcribed to numpy + scipy."""
    axes_to_perm: dict[str, list[str | None]] = {k: [None] * v.ndim for k, v in params_a.items()}
    for p, axes in spec.items():
        for k, ax in axes:
            axes_to_perm[k][ax] = p
    sizes = {p: params_a[axes[0][0]].shape[axes[0][1]] for p, axes in spec.items()}
    perm = {p: np.arange(n) for p, n in sizes.items()}
    names = list(perm)

    def permuted(k, except_axis):
        w = params_b[k]
        for ax, p in enumerate(axes_to_perm[k]):
            if ax != except_axis and p is not None:
                w = np.take(w, perm[p], axis=ax)
        return w

    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        progress = False
        for i in rng.permutation(len(names)):
            p, n = names[i], sizes[names[i]]
            cost = np.zeros((n, n))
            for k, ax in spec[p]:
                w_a = np.moveaxis(params_a[k], ax, 0).reshape(n, -1)
                w_b = np.moveaxis(permuted(k, ax), ax, 0).reshape(n, -1)
                cost += w_a @ w_b.T
            _, ci = linear_sum_assignment(cost, maximize=True)
            old, new = cost[np.arange(n), perm[p]].sum(), cost[np.arange(n), ci].sum()
            progress = progress or new > old + 1e-12
            perm[p] = ci
        if not progress:
            break
    return {p: torch.as_tensor(v) for p, v in perm.items()}


def objective(G, sd_a, sd_b_aligned) -> float:
    keys = {k for axes in G.permutation_spec().values() for k, _ in axes}
    return float(sum((sd_a[k].double() * sd_b_aligned[k].double()).sum() for k in keys))


def best_of(fn, repeats: int = 3):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def run() -> None:
    a, b, how = trained_pair()
    x = torch.randn(2, WIDTHS[0])
    G = sl.symmetries(a, x)
    sd_a, sd_b = a.state_dict(), b.state_dict()
    print(f"models: {WIDTHS} ({how}); torch threads: {torch.get_num_threads()}")

    t_sym, al = best_of(lambda: weight_matching(sd_a, sd_b, G, seed=0))
    obj_sym = objective(G, sd_a, al.apply(sd_b))
    print(
        f"symlab weight_matching:   {t_sym:7.3f} s  objective {obj_sym:.4f}  "
        f"({al.info['passes']} passes, {al.info['solves']} solves)"
    )

    spec = G.permutation_spec()
    np_a = {k: v.numpy() for k, v in sd_a.items()}
    np_b = {k: v.numpy() for k, v in sd_b.items()}
    t_gr, perms = best_of(lambda: gr_transcription(spec, np_a, np_b))
    obj_gr = objective(G, sd_a, G.act(G.element(perms), sd_b))
    print(f"Git Re-Basin transcript.: {t_gr:7.3f} s  objective {obj_gr:.4f}")
    print(f"  ratio transcription / symlab: {t_gr / t_sym:.1f}x (goal: symlab < 0.5 s)")

    try:
        from rebasin import PermutationCoordinateDescent
    except ImportError:
        print("rebasin not installed (pip install rebasin, bench-only): comparison skipped")
        return
    b_copy = copy.deepcopy(b)
    t0 = time.perf_counter()
    pcd = PermutationCoordinateDescent(a, b_copy, x)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    pcd.rebasin()
    t_rb = time.perf_counter() - t0
    obj_rb = objective(G, sd_a, b_copy.state_dict())
    print(
        f"rebasin PCD:              {t_rb:7.3f} s  objective {obj_rb:.4f}  (+{t_init:.2f} s init)"
    )
    print(
        f"  ratio rebasin / symlab: {t_rb / t_sym:.1f}x (with init {(t_rb + t_init) / t_sym:.1f}x;"
        " goal >= 20x)"
    )
    print(f"  objective symlab - rebasin: {obj_sym - obj_rb:+.4f}")
