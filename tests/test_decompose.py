"""``torch.addcmul`` / ``torch.addcdiv`` (function and method, with ``value``) read as the sum and
product they compute, in both front-ends, and proved against brute force; timm's global
response norm (ConvNeXt-V2), which writes its affine with ``addcmul``, is derived."""

from __future__ import annotations

import pytest
import torch
from ops_contexts import export_only, kinds, prove
from torch import nn

import symlab as sl

D = torch.float64
X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=D)


class Combined(nn.Module):
    """``b(f(relu(a(x))))`` for the ``addcmul``/``addcdiv`` form ``f``."""

    def __init__(self, form: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.form = nn.Linear(3, 4), nn.Linear(4, 2), form
        self.w, self.c = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))
        self.s = nn.Parameter(torch.tensor(0.7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = {
            "affine": lambda: torch.addcmul(self.c, self.w, h),
            "affine, value": lambda: torch.addcmul(self.c, self.w, h, value=0.5),
            "method": lambda: h.addcmul(h, self.w),
            "one tensor thrice": lambda: torch.addcmul(h, h, h),
            "0-dim factor": lambda: torch.addcmul(h, self.s, h),
            "addcdiv by a parameter": lambda: torch.addcdiv(self.c, h, self.w.abs() + 1),
            "addcdiv by the units": lambda: torch.addcdiv(self.c, self.w, h.abs() + 1),
        }[self.form]()
        return self.b(h)


@pytest.mark.parametrize(
    "form,expected",
    [
        ("affine", ["S_4", "R_{>0}^4"]),  # c + w ⊙ h: a per-unit affine map
        ("affine, value", ["S_4", "R_{>0}^4"]),
        ("method", ["S_4"]),  # h + h ⊙ w: the scale of h is not absorbed
        ("one tensor thrice", ["S_4"]),
        ("0-dim factor", ["S_4", "R_{>0}^4"]),
        ("addcdiv by a parameter", []),  # a quotient by a computed tensor: opaque
        ("addcdiv by the units", []),
    ],
)
def test_addcmul_and_addcdiv(form: str, expected: list[str]) -> None:
    net = Combined(form).double()
    G = prove(net, X, complete=form not in ("addcdiv by a parameter", "addcdiv by the units"))
    assert kinds(G) == expected, kinds(G)
    with export_only():
        assert kinds(prove(net, X, complete=False)) == expected


class GlobalResponseNorm(nn.Module):
    """timm's ``GlobalResponseNorm`` (channels last), as ConvNeXt-V2 writes it."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(c)), nn.Parameter(torch.randn(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.norm(p=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return x + torch.addcmul(self.bias.view(1, 1, 1, -1), self.weight.view(1, 1, 1, -1), x * n)


def test_global_response_norm_is_read() -> None:
    """Before, ``addcmul`` had no rule and the whole model was refused; now it is read, the
    layers after the norm keep their symmetries, and the group holds on the real model (the
    norm's own channel symmetries are not derived: its ``norm``/``mean`` are opaque)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 1), _ChannelsLast(), GlobalResponseNorm(4), _Pool(), nn.Linear(4, 5),
        nn.ReLU(), nn.Linear(5, 3),
    ).double()  # fmt: skip
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=D)
    G = sl.symmetries(net, x)
    assert kinds(G) == ["S_5", "R_{>0}^5"], kinds(G)
    assert sl.check_invariance(net, G, x).passed


class _ChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((1, 2))
