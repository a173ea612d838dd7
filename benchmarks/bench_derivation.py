"""Derivation time (trace + rules + group), against the issue's budget of one second.

Cases: an MLP with 8 hidden layers of width 4096, and a graph of ~10⁴ ops (a deep residual
LayerNorm MLP). Prints the median of several runs and its ratio to the 1 s goal.
"""

from __future__ import annotations

import symlab as sl
from benchmarks._timing import median_time

BUDGET_S = 1.0


def run() -> None:
    wide = sl.graph.mlp([784] + [4096] * 8 + [10], "relu")
    deep = sl.graph.mlp([16] + [32] * 3333 + [10], "relu", norm="layernorm", residual=True)
    wide_model = sl.nn.MLP([784] + [4096] * 8 + [10], "relu")
    cases = {
        "MLP 8x4096 (graph)": lambda: sl.symmetries(wide),
        "MLP 8x4096 (nn.Module, trace+derive)": lambda: sl.symmetries(wide_model),
        f"{len(deep)}-op residual LN MLP (graph)": lambda: sl.symmetries(deep),
        f"{len(deep)}-op graph build + derive": lambda: sl.symmetries(
            sl.graph.mlp([16] + [32] * 3333 + [10], "relu", norm="layernorm", residual=True)
        ),
    }
    print(f"{'case':<42} {'median s':>10} {'ratio to 1 s goal':>18}")
    for name, fn in cases.items():
        t = median_time(fn)
        print(f"{name:<42} {t:>10.4f} {t / BUDGET_S:>18.3f}")
