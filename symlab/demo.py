"""``make demo``: derive, sample, act and prove, on a few architectures."""

from __future__ import annotations

import sympy as sp
import torch

import symlab as sl
from symlab.stateless import call_with_state


def main() -> None:
    d, n, m, k = sp.symbols("d n m k")
    G = sl.symmetries(sl.graph.mlp([d, n, m, k], activation="relu"))
    print("ReLU MLP [d, n, m, k]:", G.order, "| dimension", G.dimension)

    net = sl.nn.MLP([40, 128, 128, 10], activation="relu", dtype=torch.float64)
    G = sl.symmetries(net)
    print(G)
    h = G.sample(torch.Generator().manual_seed(0))
    moved = G.act(h, net.state_dict())
    x = torch.randn(256, 40, dtype=torch.float64)
    with torch.no_grad():
        out = call_with_state(net, moved, (x,))
        print("max |f(x; g·θ) - f(x; θ)| =", float((out - net(x)).abs().max()))
    print(sl.check_invariance(net, G, x, samples=16))

    for name, model in {
        "tanh + LayerNorm": sl.nn.MLP([8, 16, 16, 4], "tanh", norm="layernorm"),
        "sigmoid": sl.nn.MLP([8, 16, 4], "sigmoid"),
        "W-asymmetric (κ=1)": sl.nn.MLP([8, 16, 16, 4], "relu", asym={"num_fixed": 4}),
        "FiGLU": sl.nn.MLP([8, 16, 16, 4], "figlu"),
    }.items():
        Gm = sl.symmetries(model)
        print(f"{name:<20} {Gm._product(False):<60} log10|G| = {Gm.log10_order:.2f}")

    tiny = sl.nn.MLP([3, 3, 3, 2], "tanh", dtype=torch.float64)
    bf = sl.brute_force_group(tiny, torch.randn(64, 3, dtype=torch.float64))
    missed, extra = bf.compare(sl.symmetries(tiny))
    print(f"brute force on a tiny tanh net: {bf.order} elements; derived group "
          f"{'matches' if not (missed.order or extra.order) else 'DIFFERS'}")  # fmt: skip


if __name__ == "__main__":
    main()
