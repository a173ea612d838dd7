"""P2: weight matching on a 3×512 MLP (MNIST-1D shaped, 40-512-512-512-10).

symlab's ``weight_matching`` against (a) a plain scipy transcription of Git Re-Basin's loop
(Ainsworth et al. 2023, ``src/weight_matching.py``) written below, and (b) snimu/rebasin's
``PermutationCoordinateDescent`` when the bench-only ``rebasin`` package is installed. Same two
models, same objective ``Σ ⟨w_A, w_B aligned⟩`` (evaluated identically for every method).
Times: interleaved rounds on one thread (``benchmarks/_harness.py``); objectives: over 8 seeds
(symlab's ``seed``, rebasin's global torch seed) on a random-init and a briefly trained pair; and
symlab alone on a 3×2048 random-init pair.
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
from benchmarks._harness import Timing, fixed_threads, header, interleave, ratio, spread
from symlab.align import weight_matching

WIDTHS = [40, 512, 512, 512, 10]
ROUNDS = 5
SEEDS = 8


def make(seed: int, widths: list[int] = WIDTHS) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
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


def _pcd(a: nn.Module, b: nn.Module, x: torch.Tensor, seed: int) -> nn.Module:
    """rebasin's PermutationCoordinateDescent on a copy of ``b`` (its visiting order drawn from
    torch's global generator, seeded here); returns the permuted copy."""
    from rebasin import PermutationCoordinateDescent

    b_copy = copy.deepcopy(b)
    torch.manual_seed(seed)
    PermutationCoordinateDescent(a, b_copy, x).rebasin()
    return b_copy


def _objectives(a: nn.Module, b: nn.Module, x: torch.Tensor, rebasin: bool) -> None:
    """Objective of symlab (forward start and identity start) and rebasin over SEEDS seeds."""
    G = sl.symmetries(a, x)
    sd_a, sd_b = a.state_dict(), b.state_dict()
    rows: dict[str, list[float]] = {"symlab": [], "symlab, identity start": [], "rebasin": []}
    with fixed_threads():
        for s in range(SEEDS):
            rows["symlab"].append(weight_matching(sd_a, sd_b, G, seed=s).objective)
            al = weight_matching(sd_a, sd_b, G, seed=s, init=G.identity())
            rows["symlab, identity start"].append(al.objective)
            if rebasin:
                rows["rebasin"].append(objective(G, sd_a, _pcd(a, b, x, s).state_dict()))
    for k, v in rows.items():
        if v:
            print(f"    {k:<24} {spread(v, '', 2)}")
    if rebasin:
        diff = [p - q for p, q in zip(rows["symlab"], rows["rebasin"], strict=True)]
        print(f"    symlab − rebasin, per seed: {spread(diff, '', 2)} (goal ≥ 0)")


def run() -> None:
    header("P2: weight matching, 3×512 MLP 40-512-512-512-10, and 3×2048")
    with fixed_threads():
        a, b, how = trained_pair()
    x = torch.randn(2, WIDTHS[0], generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(a, x)
    sd_a, sd_b = a.state_dict(), b.state_dict()
    spec = G.permutation_spec()
    np_a = {k: v.numpy() for k, v in sd_a.items()}
    np_b = {k: v.numpy() for k, v in sd_b.items()}
    try:
        import rebasin  # noqa: F401

        have_rb = True
    except ImportError:  # pragma: no cover - bench-only dependency
        have_rb = False
        print("rebasin not installed (pip install -e '.[bench]'): comparison skipped")
    fns = {
        "symlab weight_matching": lambda: weight_matching(sd_a, sd_b, G, seed=0),
        "Git Re-Basin transcription": lambda: gr_transcription(spec, np_a, np_b),
    }
    if have_rb:
        fns["rebasin PCD (incl. tracing)"] = lambda: _pcd(a, b, x, 0)
    t = interleave(fns, rounds=ROUNDS)
    print(f"  trained pair ({how}), {ROUNDS} interleaved rounds:")
    for k, v in t.items():
        print(f"    {k:<28} {v}")
    sym = t["symlab weight_matching"]
    print(f"    ratio transcription / symlab: {ratio(t['Git Re-Basin transcription'], sym)}")
    if have_rb:
        print(f"    ratio rebasin / symlab:       {ratio(t['rebasin PCD (incl. tracing)'], sym)}")
    print(f"    symlab / 0.3 s goal: wall {sym.median / 0.3:.2f}, CPU {sym.cpu_median / 0.3:.2f}")

    print(f"  objective Σ⟨w_A, w_B aligned⟩ over {SEEDS} seeds, median [min–max]:")
    print("   random-init pair (seeds 0 and 1):")
    _objectives(make(0), make(1), x, have_rb)
    print(f"   trained pair ({how}):")
    _objectives(a, b, x, have_rb)

    wide = [WIDTHS[0], 2048, 2048, 2048, WIDTHS[-1]]
    a2, b2 = make(0, wide), make(1, wide)
    G2 = sl.symmetries(a2, x)
    sd_a2, sd_b2 = a2.state_dict(), b2.state_dict()
    t2 = Timing()
    with fixed_threads():
        for _ in range(2):  # no warm-up: a run takes seconds
            c0, w0 = time.process_time(), time.perf_counter()
            al = weight_matching(sd_a2, sd_b2, G2, seed=0)
            t2.wall.append(time.perf_counter() - w0)
            t2.cpu.append(time.process_time() - c0)
    print(
        f"  3×2048 random-init pair: {t2}\n    goal < 8 s: wall {t2.median / 8:.2f}, CPU "
        f"{t2.cpu_median / 8:.2f}; {al.info['solves']} solves, objective {al.objective:.2f}"
    )
