"""P3: a 25-point linear-interpolation curve, 3×512 MLP, 5 000 MNIST-1D-shaped inputs.

``symlab.connect.interpolate`` (on CPU: parameters written per α into a scratch copy, rows in
cache-sized blocks, the input layer's products shared by all α, the Linear/ReLU chain run with
its ReLUs in place) against a loop that loads a state_dict per α, and against the compute floor:
25 bare forward passes of one model. Also timed: the hidden layers' products alone (25 × two
5000×512×512 ``addmm``), the exact bound.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F

import symlab as sl
from benchmarks._harness import header, interleave, ratio, spread
from symlab.connect import interpolate, interpolate_state

WIDTHS = [40, 512, 512, 512, 10]
N, ALPHAS = 5000, 25
ROUNDS = 5


def run() -> None:
    header(f"P3: {ALPHAS}-point curve, {WIDTHS} MLP, {N} inputs")
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

    # the exact lower bound: the 512×512 products every α needs (no exact rewrite shares them
    # between α after the first layer; see benchmarks/README.md, Interpolation)
    hidden = [a.get_submodule(f"layers.{i}.linear") for i in range(1, len(WIDTHS) - 2)]
    h = torch.relu(torch.randn(N, WIDTHS[1], generator=g))

    def products() -> None:
        with torch.no_grad():
            for _ in alphas:
                for lin in hidden:
                    torch.addmm(lin.bias, h, lin.weight.t())

    t = interleave(
        {
            "floor (25 bare forwards)": floor,
            "per-α state_dict loop": loop,
            "interpolate (auto)": curve(),
            "hidden products alone": products,
        },
        rounds=ROUNDS,
    )
    fl = t["floor (25 bare forwards)"]
    print(f"  {ROUNDS} interleaved rounds after a warm-up; median [min–max]")
    for label, v in t.items():
        print(f"    {label:<26} {v}; page faults per round {spread(v.faults, digits=0)}")
    for label in ("per-α state_dict loop", "interpolate (auto)", "hidden products alone"):
        print(f"    ratio {label} / floor: {ratio(t[label], fl)}")
    print("    goal: interpolate (auto) < 0.9× floor")
    bound = ratio(t["interpolate (auto)"], t["hidden products alone"])
    print(f"    interpolate / its exact bound (the hidden products alone): {bound}")
