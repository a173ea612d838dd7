"""Shared helpers of the pattern tests: force the torch.export front-end, build tiny
transformers classes offline (random weights, no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def force_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch.fx refuse every model, so that symlab reads it through torch.export."""
    from symlab.frontend import tracer as tracer_mod

    def refuse(self, *args, **kwargs):
        raise RuntimeError("torch.fx refused (forced by the test)")

    monkeypatch.setattr(tracer_mod.Tracer, "trace", refuse)


def frontend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``request.param`` is ``"torch.fx"`` or ``"torch.export"``; forces the latter."""
    if request.param == "torch.export":
        force_export(monkeypatch)
    return request.param


def scramble(model: torch.nn.Module, seed: int = 0, std: float = 0.5) -> torch.nn.Module:
    """Re-draw every parameter (transformers initialise projections with std 0.02, too small
    for an invariance check to see a wrong symmetry through float32 norms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model
