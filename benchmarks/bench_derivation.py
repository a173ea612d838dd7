"""Derivation time (trace + rules + group), against the issue's budget of one second.

Cases: an MLP with 8 hidden layers of width 4096, and a graph of ~10⁴ ops (a deep residual
LayerNorm MLP), each graph built afresh per call (a derived group is cached on its graph).
Prints median [min–max] of 5 interleaved rounds and the ratio to the 1 s goal.
"""

from __future__ import annotations

import symlab as sl
from benchmarks._harness import header, interleave

BUDGET_S = 1.0


def run() -> None:
    wide = [784] + [4096] * 8 + [10]
    deep = [16] + [32] * 3333 + [10]
    n_ops = len(sl.graph.mlp(deep, "relu", norm="layernorm", residual=True))
    cases = {  # every call builds its graph afresh: a derived group is cached on its graph
        "MLP 8x4096 (graph build + derive)": lambda: sl.symmetries(sl.graph.mlp(wide, "relu")),
        f"{n_ops}-op residual LN MLP (build + derive)": lambda: sl.symmetries(
            sl.graph.mlp(deep, "relu", norm="layernorm", residual=True)
        ),
        f"{n_ops}-op graph build alone": lambda: sl.graph.mlp(
            deep, "relu", norm="layernorm", residual=True
        ),
    }
    header("Derivation time against the 1 s budget (no peer baseline)")
    t = interleave(cases, rounds=5)
    print(f"  {'case':<42} {'median [min–max]':>40} {'wall/1 s':>9} {'CPU/1 s':>8}")
    for name, v in t.items():
        print(f"  {name:<42} {v!s:>40} {v.median / BUDGET_S:>9.3f} {v.cpu_median / BUDGET_S:>8.3f}")
