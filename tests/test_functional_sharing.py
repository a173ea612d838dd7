"""One parameter read by several functional calls (``F.linear(x, W1, c)`` and ``F.linear(y,
W2, c)``; a called Linear's weight read again by ``F.linear``): every call declares it, the
calls are tied, and a flip shift absorbed into a shared bias through two different weights
keeps no sign flips. Each case is proved against brute force in both front-ends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from ops_contexts import export_only, kinds, prove
from torch import nn

import symlab as sl
from symlab.symmetry import sharing

D = torch.float64
X = torch.randn(6, 4, generator=torch.Generator().manual_seed(3), dtype=D)
Act = Callable[[torch.Tensor], torch.Tensor]


class TwoCalls(nn.Module):
    """``F.linear(f(a x), W1, c1) + F.linear(g(b x), W2, c2)`` where ``share`` names which of
    the second call's tensors are the first's (``"bias"``, ``"weight"``, or both)."""

    def __init__(self, share: str, f: Act, g: Act, second_bias: bool = True) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a, self.b = nn.Linear(4, 5).double(), nn.Linear(4, 5).double()
        self.w1 = nn.Parameter(torch.randn(3, 5, generator=gen, dtype=D))
        self.c1 = nn.Parameter(torch.randn(3, generator=gen, dtype=D))
        self.w2 = self.w1 if "weight" in share else nn.Parameter(torch.randn(3, 5, dtype=D))
        self.c2 = None
        if second_bias:
            self.c2 = self.c1 if "bias" in share else nn.Parameter(torch.randn(3, dtype=D))
        self.f, self.g, self.share = f, g, share

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w2 = self.w1 if "weight" in self.share else self.w2
        c2 = self.c1 if "bias" in self.share and self.c2 is not None else self.c2
        y1 = F.linear(self.f(self.a(x)), self.w1, self.c1)
        return y1 + F.linear(self.g(self.b(x)), w2, c2)


def _prove_both(net: nn.Module, x: torch.Tensor) -> list[str]:
    """Prove the group in both front-ends (brute force both ways) and return its kinds."""
    G = prove(net, x)
    with export_only():
        G_export = prove(net, x)
    assert kinds(G_export) == kinds(G)
    return kinds(G)


def _sign_kinds(k: list[str]) -> list[str]:
    return [s for s in k if s.startswith(("{±1}", "Z2"))]


@pytest.mark.parametrize(
    "share,f,g,signs",
    [
        # one bias under two weights: c - W1 s and c - W2 s differ, so no flips after sigmoids
        ("bias", torch.sigmoid, torch.sigmoid, False),
        ("bias", torch.sigmoid, torch.tanh, False),
        # tanh is odd: flips carry no shift, so the shared bias keeps them
        ("bias", torch.tanh, torch.tanh, True),
        # one weight, two biases: each bias absorbs the same W s
        ("weight", torch.sigmoid, torch.sigmoid, True),
        ("weight+bias", torch.sigmoid, torch.sigmoid, True),
    ],
)
def test_shared_functional_parameters(share: str, f: Act, g: Act, signs: bool) -> None:
    net = TwoCalls(share, f, g).eval()
    k = _prove_both(net, X)
    assert "S_5" in k, k
    assert bool(_sign_kinds(k)) is signs, k


def test_one_call_cannot_absorb_the_shift() -> None:
    """The second call has no bias: a sigmoid's flip shift has nowhere to go there, and the
    tie carries that to the first call's input."""
    net = TwoCalls("weight", torch.sigmoid, torch.sigmoid, second_bias=False).eval()
    k = _prove_both(net, X)
    assert "S_5" in k and not _sign_kinds(k), k


def test_negative_control_a_shared_bias_absorbing_two_shifts_is_caught() -> None:
    """Without the rule that a bias shared under two weights keeps no flips, the derived flips
    change the outputs: the check the rule exists for fails."""
    net = TwoCalls("bias", torch.sigmoid, torch.sigmoid).eval()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sharing, "_absorb_alike", lambda *args: True)
        G = sl.symmetries(net, X)
        assert _sign_kinds(kinds(G))
        assert not sl.check_invariance(net, G, X, samples=8, raise_on_failure=False).passed


def test_a_called_module_and_its_weight_in_f_linear() -> None:
    """``self.fc(h) + F.linear(torch.tanh(h), self.fc.weight)``: two calls of one layer, one
    with a bias and a sigmoid's shift to absorb, one without; tied port by port."""

    class ModuleAndFunctional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.fc = nn.Linear(4, 5), nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.sigmoid(self.a(x))
            return self.fc(h) + F.linear(torch.tanh(h), self.fc.weight)

    k = _prove_both(ModuleAndFunctional().double().eval(), X)
    assert k == ["S_5"], k
