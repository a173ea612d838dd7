"""Derivation time (trace + rules + group), against the issue's budget of one second.

Cases: an MLP with 8 hidden layers of width 4096, and a graph of ~10⁴ ops (a deep residual
LayerNorm MLP). Prints median [min–max] of 5 interleaved rounds and the ratio to the 1 s goal.
"""

from __future__ import annotations

import symlab as sl
from benchmarks._harness import header, interleave

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
    header("Derivation time against the 1 s budget (no peer baseline)")
    t = interleave(cases, rounds=5)
    print(f"  {'case':<42} {'median [min–max]':>40} {'ratio to 1 s goal':>18}")
    for name, v in t.items():
        print(f"  {name:<42} {v!s:>40} {v.median / BUDGET_S:>18.3f}")
