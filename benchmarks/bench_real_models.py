"""P5: the full group of real models at real size — GPT-2 small (124 M parameters) and BERT-base
from their transformers configurations, ViT-B/16 from torchvision — beside torch.export's own
time for the same model and input.

Goal: under 1 s each on one core, and a derivation time that does not grow with the input
(symlab's shape pass runs on fake tensors): each model is timed at a small and a 16× larger
input. Models built with random weights, nothing downloaded. transformers and torchvision come
with the ``models`` extra (``pip install -e '.[models]'``); without them those rows are skipped.
torch.export and symlab run alternately (a change of load hits both); medians [min–max] of
``REPEATS`` runs, one thread.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from threadpoolctl import threadpool_limits
from torch import nn

import symlab as sl
from symlab.frontend.inputs import ExampleInputs
from symlab.testing._torchvision_compat import ensure_torchvision_importable

REPEATS = 3


def _models() -> dict[str, tuple[nn.Module, list[ExampleInputs]]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ensure_torchvision_importable()
    out: dict[str, tuple[nn.Module, list[ExampleInputs]]] = {}
    g = torch.Generator().manual_seed(0)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        for name, model in (
            (
                "GPT-2 small",
                lambda: transformers.GPT2Model(transformers.GPT2Config(use_cache=False)),
            ),
            ("BERT-base", lambda: transformers.BertModel(transformers.BertConfig())),
        ):
            torch.manual_seed(0)
            sizes = [ExampleInputs((), {"input_ids": torch.randint(0, 1000, (1, t), generator=g)})
                     for t in (32, 512)]  # fmt: skip
            out[name] = (model().eval(), sizes)
    except ImportError:  # pragma: no cover - optional
        print("transformers not installed: `pip install -e '.[models]'` for GPT-2 and BERT")
    try:
        import torchvision.models as tvm

        torch.manual_seed(0)
        sizes = [ExampleInputs((torch.randn(b, 3, 224, 224, generator=g),)) for b in (1, 16)]
        out["ViT-B/16"] = (tvm.vit_b_16(weights=None).eval(), sizes)
    except ImportError:  # pragma: no cover - optional
        print("torchvision not installed: `pip install -e '.[models]'` for ViT-B/16")
    return out


def _alternating(fns: list[Callable[[], Any]], repeats: int = REPEATS) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return times


def _fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts):6.2f} [{min(ts):.2f}–{max(ts):.2f}]"


def run() -> None:
    torch.set_num_threads(1)
    print(f"{'model':<12} {'input':<22} {'symlab s':>20} {'torch.export s':>20} {'ratio':>6} "
          f"{'front-end':>13}")  # fmt: skip
    with threadpool_limits(1):
        for name, (model, sizes) in _models().items():
            for inputs in sizes:
                shape = tuple(inputs.tensors()[0].shape)

                def ours(m: nn.Module = model, x: ExampleInputs = inputs) -> Any:
                    return sl.symmetries(m, x.args or None, kwargs=x.kwargs or None)

                def export(m: nn.Module = model, x: ExampleInputs = inputs) -> Any:
                    with torch.no_grad():
                        return torch.export.export(m, x.args, x.kwargs, strict=False)

                try:
                    G = ours()
                except sl.errors.SymlabError as e:
                    print(f"{name:<12} {shape!s:<22} refused: {str(e)[:120]}")
                    break
                t_sl, t_ex = _alternating([ours, export])
                ratio = statistics.median(t_sl) / statistics.median(t_ex)
                print(f"{name:<12} {shape!s:<22} {_fmt(t_sl):>20} {_fmt(t_ex):>20} "
                      f"{ratio:>6.2f} {G.graph.frontend:>13}")  # fmt: skip
            print(f"  {name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M "
                  f"parameters; goal: symlab under 1 s")  # fmt: skip


if __name__ == "__main__":
    run()
