"""P1: full derivation (trace + rules + group) for ResNet-50 and a 12-block transformer encoder,
side by side with Torch-Pruning's ``DependencyGraph().build_dependency`` on the same models.

Goal: under 1 s each and no slower than Torch-Pruning. Torch-Pruning is a bench-only dependency
(``pip install -e '.[bench]'``, done by ``make bench``); without it only symlab is timed.
Torch-Pruning runs one forward pass of the example input with autograd; symlab runs it once for
the shapes, without computing convolutions where no op looks at values (symlab.frontend.shapes).
The input is small (1×3×64×64 images, 1×16 tokens) so that the structural work, not
convolution arithmetic, dominates. The machine may be shared: the two tools run alternately
(so that a change of load hits both) and the medians of 7 runs are compared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import symlab as sl

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


def _alternating_medians(fns: list[Callable[[], object]], repeats: int = REPEATS) -> list[float]:
    """Median wall time of each of ``fns``, run in turn ``repeats`` times after one warm-up."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def run() -> None:
    torch.set_num_threads(1)
    try:
        import torch_pruning as tp
    except ImportError:  # pragma: no cover - bench-only dependency
        tp = None
        print("torch-pruning not installed: `pip install -e '.[bench]'` to compare")
    print(f"{'model':<32} {'symlab s':>9} {'TP s':>8} {'symlab/TP':>10} {'symlab/1s goal':>15}")
    for name, (model, x) in _models().items():
        fns: list[Callable[[], object]] = [lambda m=model, x=x: sl.symmetries(m, x)]
        if tp is not None:  # Torch-Pruning traces with autograd: gradients must be on
            fns.append(
                lambda m=model, x=x: tp.DependencyGraph().build_dependency(m, example_inputs=x)
            )
        t_sl, t_tp = [*_alternating_medians(fns), float("nan")][:2]
        G = sl.symmetries(model, x)
        print(f"{name:<32} {t_sl:>9.3f} {t_tp:>8.3f} {t_sl / t_tp:>10.2f} {t_sl:>15.2f}")
        print(f"  group: log10|G| = {G.log10_order:.1f}, dimension {G.dimension}, "
              f"{len(G.permutation_spec())} permutation spaces")  # fmt: skip
