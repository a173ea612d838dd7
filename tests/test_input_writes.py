"""Models whose forward writes into its input (``x.sub_(mean).div_(std)``, as research code
standardises data): every function that runs them on the user's data runs them on copies, so
the data stay as given and each pass (each α, each model, each batch) sees the same input.
Each result equals the one of the out-of-place twin."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import symlab as sl
from symlab.align.activation_matching import activation_matching
from symlab.connect import bezier_curve, interpolate, repair, reset_bn_stats, simplex


class Net(nn.Module):
    def __init__(self, seed: int, in_place: bool, bn: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.in_place = in_place
        self.lin, self.head = nn.Linear(6, 8), nn.Linear(8, 3)
        self.norm = nn.BatchNorm1d(8) if bn else nn.Identity()

    def forward(self, x):
        if self.in_place:
            x.sub_(0.5).div_(2.0)
        else:
            x = (x - 0.5) / 2.0
        return self.head(torch.relu(self.norm(self.lin(x))))


def _data(n: int = 64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _run(what: str, in_place: bool, x: torch.Tensor, y: torch.Tensor):
    a, b, c = (Net(s, in_place, bn=what == "reset_bn_stats") for s in (0, 1, 2))
    if what == "activation_matching":
        G = sl.symmetries(Net(0, False), x[:4].clone())
        return activation_matching(a, b, x, G).perms["P[lin]"].float()
    if what == "reset_bn_stats":
        return reset_bn_stats(a, x).norm.running_mean
    if what == "repair":
        return repair(c, [a, b], [0.5, 0.5], x).lin.weight.detach()
    if what == "simplex":
        return simplex([a, b, c], (x, y), resolution=2).loss
    if what == "bezier_curve":
        return bezier_curve(a, b, (x, y), steps=3, n_alphas=3, seed=0).loss
    return interpolate(a, b, (x, y), n_alphas=3).loss


@pytest.mark.parametrize(
    "what",
    ["activation_matching", "reset_bn_stats", "repair", "simplex", "bezier_curve", "interpolate"],
)
def test_the_data_stay_as_given_and_results_are_the_twins(what):
    x, y = _data()
    x0 = x.clone()
    got = _run(what, True, x, y)
    assert torch.equal(x, x0)
    want = _run(what, False, x.clone(), y)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
