"""P3: a 25-point linear-interpolation curve, 3×512 MLP, 5 000 MNIST-1D-shaped inputs.

``symlab.connect.interpolate`` (vectorised over α with ``torch.func.vmap``) against a loop that
loads a state_dict per α, and against the compute floor: 25 bare forward passes of one model.
"""

from __future__ import annotations

import copy
import time

import torch
from torch.nn import functional as F

import symlab as sl
from symlab.connect import interpolate, interpolate_state

WIDTHS = [40, 512, 512, 512, 10]
N, ALPHAS = 5000, 25


def interleaved(fns: dict, rounds: int = 3) -> dict[str, float]:
    """Best time of each function over ``rounds``, the functions alternating within a round so
    that load from other processes hits them alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def run() -> None:
    a, b = sl.nn.MLP(WIDTHS, seed=0), sl.nn.MLP(WIDTHS, seed=1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, WIDTHS[0], generator=g), torch.randint(0, 10, (N,), generator=g)
    alphas = torch.linspace(0, 1, ALPHAS).tolist()
    sd_a, sd_b = a.state_dict(), b.state_dict()

    def floor() -> None:
        with torch.no_grad():
            for _ in alphas:
                F.cross_entropy(a(x), y)

    def loop() -> None:
        m = copy.deepcopy(a)
        with torch.no_grad():
            for al in alphas:
                m.load_state_dict(interpolate_state(sd_a, sd_b, al))
                F.cross_entropy(m(x), y)

    def curve(**kw):
        return lambda: interpolate(a, b, (x, y), n_alphas=ALPHAS, **kw)

    print(f"{WIDTHS} MLP, {N} inputs, {ALPHAS} alphas; torch threads {torch.get_num_threads()}")
    t = interleaved(
        {
            "floor (25 bare forwards)": floor,
            "per-α state_dict loop": loop,
            "interpolate (auto)": curve(),
            "interpolate vmap": curve(strategy="vmap"),
            "interpolate vmap chunk=5": curve(strategy="vmap", chunk=5),
        }
    )
    t_floor, t_loop = t["floor (25 bare forwards)"], t["per-α state_dict loop"]
    for label, v in t.items():
        extra = "" if label.startswith("floor") else f"   {v / t_floor:.2f}x floor"
        if label.startswith("interpolate"):
            extra += f", loop/this {t_loop / v:.2f}x (goal <= 1.2x floor)"
        print(f"{label:<27} {v:.3f} s{extra}")
