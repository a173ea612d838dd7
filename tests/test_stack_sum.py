"""``torch.stack`` of tensors with their units on one axis (branches stacked, then summed or
averaged: selective-kernel and split attention), and sums over axes other than the units.

A stack is a ``join`` along the new axis: every part moves like the result. A sum over other
axes is a pool that maps ``x + c`` to ``sum(x) + n c``, so a sigmoid's flip shift does not pass
it unchanged (no flips are derived through it; a mean keeps them). Proved against brute force
in both front-ends."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from ops_contexts import export_only, kinds, prove
from torch import nn

import symlab as sl

D = torch.float64
X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=D)


class Branches(nn.Module):
    """``out(f(relu(a(x)), tanh(c(x))))`` for the stacking form ``f``."""

    def __init__(self, form: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.c, self.out, self.form = (
            nn.Linear(3, 4),
            nn.Linear(3, 4),
            nn.Linear(4, 2),
            form,
        )
        self.p = nn.Parameter(torch.randn(6, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, g = torch.relu(self.a(x)), torch.tanh(self.c(x))
        h = {
            "stack, sum": lambda: torch.stack([h, g], 1).sum(1),
            "stack at 0, mean": lambda: torch.stack((h, h, g)).mean(0),
            "stack last, amax": lambda: torch.stack([h, g], -1).amax(-1),
            "one branch twice": lambda: torch.stack([h, h], 1).sum(1),
            "with a parameter": lambda: torch.stack([h, self.p], 1).sum(1),
            "with zeros": lambda: torch.stack([h, torch.zeros_like(x[:, :1]).expand(6, 4)]).sum(0),
        }[self.form]()
        return self.out(h)


@pytest.mark.parametrize(
    "form,expected",
    [
        ("stack, sum", ["S_4"]),  # relu(a x) + tanh(c x): one permutation for both
        ("stack at 0, mean", ["S_4"]),
        ("stack last, amax", ["S_4"]),
        ("one branch twice", ["S_4", "R_{>0}^4"]),
        ("with a parameter", []),  # a raw parameter in the stack: opaque, the units fixed
        ("with zeros", []),  # fixed data in the stack fixes the result (sound, not complete)
    ],
)
def test_stacked_branches(form: str, expected: list[str]) -> None:
    net = Branches(form).double()
    G = prove(net, X, complete=form not in ("with a parameter", "with zeros"))
    assert kinds(G) == expected, kinds(G)
    with export_only():
        assert kinds(prove(net, X, complete=False)) == expected


class Summed(nn.Module):
    """``out(reduce(act(a(x)).view(2, 3, 4)))`` for the reduction ``form``."""

    def __init__(self, form: str, act: str = "relu") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.out, self.form = nn.Linear(3, 4), nn.Linear(4, 2), form
        self.act = torch.sigmoid if act == "sigmoid" else torch.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.a(x)).view(2, 3, 4)
        h = {
            "sum(1)": lambda: h.sum(1),
            "torch.sum keepdim": lambda: torch.sum(h, dim=1, keepdim=True)[:, 0],
            "sum((0, 1))": lambda: h.sum((0, 1)).expand(2, 4),
            "sum over the units": lambda: h.sum(-1, keepdim=True).expand(2, 3, 4)[:, 0],
            "mean(1)": lambda: h.mean(1),
        }[self.form]()
        return self.out(h)


@pytest.mark.parametrize(
    "form,act,expected",
    [
        ("sum(1)", "relu", ["S_4", "R_{>0}^4"]),
        ("torch.sum keepdim", "relu", ["S_4", "R_{>0}^4"]),
        ("sum((0, 1))", "relu", ["S_4", "R_{>0}^4"]),
        ("sum over the units", "relu", []),
        ("sum(1)", "sigmoid", ["S_4"]),  # the flip shift is scaled by 3: not kept
        ("mean(1)", "sigmoid", ["S_4", "Z2^4(flip)"]),  # a mean keeps it
    ],
)
def test_sums_over_other_axes(form: str, act: str, expected: list[str]) -> None:
    net = Summed(form, act).double()
    G = prove(net, X, complete=act == "relu")
    assert kinds(G) == expected, kinds(G)
    with export_only():
        assert kinds(prove(net, X, complete=act == "relu")) == expected


def test_negative_control_a_stack_must_tie_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a stack's join to tie its first part alone, the second branch's units would not
    move with the result, and the derived group would change the outputs."""
    from symlab.symmetry import rules
    from symlab.symmetry.spec import OpSymmetry

    real = rules._REGISTRY["join"]

    def first_only(node, graph):  # type: ignore[no-untyped-def]
        return OpSymmetry(tie=[(graph.inputs(node.name)[0], node.name)])

    monkeypatch.setitem(rules._REGISTRY, "join", dataclasses.replace(real, derive=first_only))
    net = Branches("stack, sum").double()
    G = sl.symmetries(net, X)
    assert not sl.check_invariance(net, G, X, raise_on_failure=False).passed
