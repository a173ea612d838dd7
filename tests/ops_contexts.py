"""Contexts a user reaches an op in, and the proof every derived group must pass there.

An op under test is a module factory ``make(n)`` acting on a tensor whose ``n`` units lie on
the last axis (``layout="last"``, inputs ``(B, T, 3)``) or on axis 1 (``"conv1d"``: ``(B, 2,
L)``, ``"conv2d"``: ``(B, 2, H, W)``). Each context builds a tiny float64 model around it
(between Linears with and without bias, after a ``cat`` of differently activated branches,
after a norm, after a sigmoid or a tanh, under a residual add, twice in a row, between convs
with every kernel/padding shape, before a flatten). :func:`prove` derives the group, checks
sampled elements on the real model and compares the discrete part with brute force in both
directions (nothing false, nothing missed); :func:`same_through_export` reads the model through
the torch.export fallback and requires the same group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from unittest import mock

import torch
from torch import nn

import symlab as sl
import symlab.frontend.tracer as tracer_mod

Make = Callable[[int], nn.Module]


def _width(op: nn.Module, n: int, layout: str) -> int:
    """The op's output width (units axis) on an ``n``-unit input."""
    shape = {"last": (2, 4, n), "conv1d": (2, n, 6), "conv2d": (2, n, 4, 4)}[layout]
    with torch.no_grad():
        y = op.double()(torch.randn(shape, dtype=torch.float64))
    return int(y.shape[-1] if layout == "last" else y.shape[1])


class _Last(nn.Module):
    """The op on features-last tensors, in context ``kind``."""

    def __init__(self, kind: str, make: Make, n: int) -> None:
        super().__init__()
        self.kind = kind
        if kind.startswith("cat"):
            self.fa, self.fb = nn.Linear(3, n - 1), nn.Linear(3, 1)
        else:
            self.fc = nn.Linear(3, n, bias=kind != "nobias")
        self.norm = nn.LayerNorm(n, eps=1e-12) if kind == "norm" else None
        self.op = make(n)
        self.op2 = make(_width(self.op, n, "last")) if kind == "twice" else None
        w = _width(self.op, n, "last")
        if self.op2 is not None:
            w = _width(self.op2, w, "last")
        self.out = nn.Linear(w, 2, bias=kind != "nobias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "cat":
            h = torch.cat([torch.relu(self.fa(x)), self.fb(x)], -1)
        elif self.kind == "cat_sig":
            h = torch.cat([torch.sigmoid(self.fa(x)), torch.tanh(self.fb(x))], -1)
        else:
            h = self.fc(x)
        if self.norm is not None:
            h = self.norm(h)
        if self.kind == "sigmoid":
            h = torch.sigmoid(h)
        if self.kind == "tanh":
            h = torch.tanh(h)
        y = self.op(h)
        if self.op2 is not None:
            y = self.op2(y)
        if self.kind == "residual":
            y = h + y
        return self.out(y)


LAST_CONTEXTS = ("linear", "nobias", "cat", "cat_sig", "norm", "sigmoid", "tanh", "twice",
                 "residual")  # fmt: skip


class _Conv(nn.Module):
    """The op on channels (axis 1) between convolutions: ``kind`` is the consumer (a 1×1,
    a padded 3-wide or an unpadded 3-wide conv, or a flatten into a Linear)."""

    def __init__(self, kind: str, make: Make, n: int, dims: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.kind = kind
        self.stem = conv(2, n, 3, padding=1)
        self.op = make(n)
        w = _width(self.op, n, f"conv{dims}d")
        if kind == "flatten":
            with torch.no_grad():
                shape = (1, 2, 6) if dims == 1 else (1, 2, 4, 4)
                feat = self.op.double()(self.stem.double()(torch.zeros(shape, dtype=torch.float64)))
            self.head: nn.Module = nn.Linear(feat[0].numel(), 2)
        else:
            k, pad = {"k1": (1, 0), "k3pad": (3, 1), "k3": (3, 0)}[kind]
            self.head = conv(w, 2, k, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(self.stem(x))
        return self.head(torch.flatten(y, 1) if self.kind == "flatten" else y)


CONV_CONTEXTS = ("k1", "k3pad", "k3", "flatten")


def model(kind: str, make: Make, n: int, layout: str = "last", seed: int = 0) -> nn.Module:
    """The tiny float64 model of context ``kind`` around the op (eval mode)."""
    torch.manual_seed(seed)
    if layout == "last":
        net: nn.Module = _Last(kind, make, n)
    else:
        net = _Conv(kind, make, n, 1 if layout == "conv1d" else 2)
    return net.double().eval()


def inputs(layout: str, seed: int = 7, batch: int = 12) -> torch.Tensor:
    """Inputs for ``layout`` (seeded, float64, spread wide so clamps and ReLUs cut)."""
    g = torch.Generator().manual_seed(seed)
    shape = {"last": (batch, 4, 3), "conv1d": (batch, 2, 6), "conv2d": (batch, 2, 4, 4)}[layout]
    return torch.randn(shape, generator=g, dtype=torch.float64) * 2


def prove(
    net: nn.Module, x: torch.Tensor, *, brute: bool = True, complete: bool = True
) -> sl.SymmetryGroup:
    """Derive the group, check sampled elements on the real model, and compare the discrete
    part with brute force both ways (``complete=False``: only that nothing is invented, for a
    documented gap)."""
    G = sl.symmetries(net, x)
    report = sl.check_invariance(net, G, x, samples=4)
    assert report.passed, report
    if brute:
        bf = sl.brute_force_group(net, x)
        missed, extra = bf.compare(G)
        assert not extra.permutations and not extra.signs, f"derivation invented {extra}"
        if complete:
            assert not missed.permutations and not missed.signs, f"derivation missed {missed}"
    return G


@contextlib.contextmanager
def export_only() -> Iterator[None]:
    """torch.fx refuses every model inside the block, so symlab reads it through torch.export."""

    def refuse(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("torch.fx refused (forced by the test)")

    with mock.patch.object(tracer_mod.Tracer, "trace", refuse):
        yield


def signature(G: sl.SymmetryGroup) -> list[tuple[str, str]]:
    """Factor kinds and sizes, in order (node names differ between the two front-ends)."""
    return [(f.kind, str(f.size)) for f in G.factors]


def same_through_export(net: nn.Module, x: torch.Tensor) -> sl.SymmetryGroup:
    """The group read through torch.export equals torch.fx's and passes the proof."""
    G = sl.symmetries(net, x)
    with export_only():
        assert sl.trace(net, x).frontend == "torch.export"
        G_export = sl.symmetries(net, x)
        report = sl.check_invariance(net, G_export, x, samples=4)
    assert report.passed, report
    assert signature(G_export) == signature(G)
    return G_export


def kinds(G: sl.SymmetryGroup) -> list[str]:
    """Short factor names (``S_3``, ``{±1}^3``, ``R_{>0}^3``, ``GL_3``, ...)."""
    return [f.short() for f in G.factors]


__all__ = [
    "CONV_CONTEXTS",
    "LAST_CONTEXTS",
    "export_only",
    "inputs",
    "kinds",
    "model",
    "prove",
    "same_through_export",
    "signature",
]
