"""P5: the full group of real models at real size — GPT-2 small (124 M parameters) and BERT-base
from their transformers configurations, ViT-B/16 from torchvision — beside torch.export's own
time for the same model and input.

Goal: under 1 s each on one core, and a derivation time that does not grow with the input
(symlab's shape pass runs on fake tensors): each model is timed at a small and a large input
(16 and 512 tokens; 1 and 16 images). Models built with random weights, nothing downloaded.
transformers and torchvision come with the ``models`` extra (``pip install -e '.[models]'``);
without them those rows are skipped. symlab and torch.export run in interleaved rounds on one
thread (``benchmarks/_harness.py``); medians [min–max] of ``REPEATS`` rounds, wall and CPU time.
GPT-2 and BERT go through torch.export inside symlab too (torch.fx cannot trace their
``**kwargs`` forwards), so their ratio is symlab's own work on top of export's. The last column
is ``print(G)`` of a fresh group (a large group lists its declared axes without acting).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn

import symlab as sl
from benchmarks._harness import fixed_threads, header, interleave, ratio
from symlab.frontend.inputs import ExampleInputs
from symlab.testing._torchvision_compat import ensure_torchvision_importable

REPEATS = int(os.environ.get("SYMLAB_BENCH_REPEATS", "5"))


Sizes = list[tuple[str, ExampleInputs]]


def _models() -> dict[str, tuple[nn.Module, Sizes]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ensure_torchvision_importable()
    out: dict[str, tuple[nn.Module, Sizes]] = {}
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
            sizes = [(f"{t} tokens",
                      ExampleInputs((), {"input_ids": torch.randint(0, 1000, (1, t), generator=g)}))
                     for t in (16, 512)]  # fmt: skip
            out[name] = (model().eval(), sizes)
    except ImportError:  # pragma: no cover - optional
        print("transformers not installed: `pip install -e '.[models]'` for GPT-2 and BERT")
    try:
        import torchvision.models as tvm

        torch.manual_seed(0)
        images = [torch.randn(b, 3, 224, 224, generator=g) for b in (1, 16)]
        sizes = [(f"{len(x)} image{'s' * (len(x) > 1)}", ExampleInputs((x,))) for x in images]
        out["ViT-B/16"] = (tvm.vit_b_16(weights=None).eval(), sizes)
    except ImportError:  # pragma: no cover - optional
        print("torchvision not installed: `pip install -e '.[models]'` for ViT-B/16")
    return out


def _print_time(model: nn.Module, x: ExampleInputs) -> float:
    G = sl.symmetries(model, x.args or None, kwargs=x.kwargs or None)
    with fixed_threads():
        t0 = time.perf_counter()
        repr(G)
        return time.perf_counter() - t0


def run() -> None:
    header("P5: derivation of real models at real size vs torch.export of the same model")
    print(f"  {REPEATS} interleaved rounds after a warm-up; median [min–max]; goal: symlab < 1 s")
    for name, (model, sizes) in _models().items():
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"  {name} ({n_params:.0f} M parameters):")
        medians = []
        for label, x in sizes:

            def ours(m: nn.Module = model, x: ExampleInputs = x) -> Any:
                return sl.symmetries(m, x.args or None, kwargs=x.kwargs or None)

            def export(m: nn.Module = model, x: ExampleInputs = x) -> Any:
                with torch.no_grad():
                    return torch.export.export(m, x.args, x.kwargs, strict=False)

            try:
                G = ours()
            except sl.errors.SymlabError as e:
                print(f"    {label}: refused: {str(e)[:160]}")
                break
            t = interleave({"symlab": ours, "torch.export": export}, rounds=REPEATS)
            medians.append(t["symlab"].cpu_median)
            print(f"    {label}  (front-end {G.graph.frontend}, log10|G| = "
                  f"{G.log10_order:.0f}, {len(G.factors)} factors)")  # fmt: skip
            for k, v in t.items():
                print(f"      {k:<13} {v}")
            print(f"      symlab / torch.export: {ratio(t['symlab'], t['torch.export'])}")
        if len(medians) == 2:
            print(f"    growth with the input ({sizes[0][0]} → {sizes[1][0]}): symlab CPU median "
                  f"×{medians[1] / medians[0]:.2f}")  # fmt: skip
            print(f"    print(G): {_print_time(model, sizes[0][1]):.3f} s")


if __name__ == "__main__":
    run()
