"""Shared by the interpolation tests: seeded data and the reference curve."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from symlab.connect import interpolate_state


def xy(n: int = 96, d: int = 6, k: int = 3, seed: int = 0):
    """``n`` standard-normal inputs of width ``d`` and integer labels below ``k``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def plain_curve(a: nn.Module, b: nn.Module, x, y, alphas) -> torch.Tensor:
    """The reference: load the interpolated state_dict into a copy, one forward per α."""
    out = []
    with torch.no_grad():
        for alpha in alphas:
            m = copy.deepcopy(a)
            m.load_state_dict(interpolate_state(a.state_dict(), b.state_dict(), alpha))
            out.append(F.cross_entropy(m(x), y).item())
    return torch.tensor(out, dtype=torch.float64)
