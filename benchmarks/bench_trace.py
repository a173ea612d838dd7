"""P1: full derivation (trace + rules + group) for ResNet-50 and a 12-block transformer encoder,
side by side with Torch-Pruning's ``DependencyGraph().build_dependency`` on the same models.

Goal: under 1 s each and no slower than Torch-Pruning. Torch-Pruning is a bench-only dependency
(``pip install -e '.[bench]'``, done by ``make bench``); without it only symlab is timed.
Torch-Pruning runs one forward pass of the example input with autograd; symlab runs it once for
the shapes, without computing convolutions where no op looks at values (symlab.frontend.shapes).
The input is small (1×3×64×64 images, 1×16 tokens) so that the structural work, not
convolution arithmetic, dominates. The machine may be shared: the two tools run alternately
on one thread (``benchmarks/_harness.py``: so that a change of load hits both) and the medians
of 7 rounds are compared.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import symlab as sl
from benchmarks._harness import header, interleave, ratio

REPEATS = 7


def _models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    from symlab.nn import zoo

    resnet50 = zoo.get("resnet50", num_classes=10).eval()
    encoder = nn.Sequential(
        nn.Linear(32, 256),
        nn.TransformerEncoder(
            nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.0, batch_first=True),
            12,
            enable_nested_tensor=False,
        ),
        nn.Linear(256, 10),
    ).eval()
    return {
        "ResNet-50": (resnet50, torch.randn(1, 3, 64, 64)),
        "transformer encoder, 12 blocks": (encoder, torch.randn(1, 16, 32)),
    }


def run() -> None:
    header("P1: derivation (trace + rules + group) vs Torch-Pruning's DependencyGraph")
    try:
        import torch_pruning as tp
    except ImportError:  # pragma: no cover - bench-only dependency
        tp = None
        print("torch-pruning not installed: `pip install -e '.[bench]'` to compare")
    print(f"  {REPEATS} interleaved rounds after a warm-up; median [min–max]")
    for name, (model, x) in _models().items():
        fns: dict[str, Callable[[], object]] = {"symlab": lambda m=model, x=x: sl.symmetries(m, x)}
        if tp is not None:  # Torch-Pruning traces with autograd: gradients must be on
            fns["Torch-Pruning"] = lambda m=model, x=x: tp.DependencyGraph().build_dependency(
                m, example_inputs=x
            )
        t = interleave(fns, rounds=REPEATS)
        print(f"  {name}:")
        for k, v in t.items():
            print(f"    {k:<14} {v}")
        if tp is not None:
            print(f"    ratio symlab / Torch-Pruning: {ratio(t['symlab'], t['Torch-Pruning'])}")
        sym = t["symlab"]
        print(f"    symlab / 1 s goal: wall {sym.median:.2f}, CPU {sym.cpu_median:.2f}")
        G = sl.symmetries(model, x)
        print(f"    group: log10|G| = {G.log10_order:.1f}, dimension {G.dimension}, "
              f"{len(G.permutation_spec())} permutation spaces")  # fmt: skip
