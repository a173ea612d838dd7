"""Norm layers are "exact up to eps": check_invariance reports such factors' error separately,
names the factor and the input behind it, and fails when it exceeds the tolerance (issue 13,
deliverable 6)."""

import pytest
import torch
from torch import nn

import symlab as sl


def _bn_net(running_var):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    net = net.double().eval()
    with torch.no_grad():
        net[1].running_var.copy_(torch.tensor(running_var, dtype=torch.float64))
        net[1].running_mean.copy_(torch.randn(4, dtype=torch.float64))
    return net


def _x(*shape, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).double() * scale


def test_a_norm_near_its_eps_fails_and_names_the_factor_and_input():
    net = _bn_net([1.0, 1e-7, 1.0, 2.0])
    x = _x(16, 3)
    G = sl.symmetries(net, x)
    rep = sl.check_invariance(net, G, x, raise_on_failure=False)
    assert not rep.passed
    bad = rep.culprit()
    assert bad is not None and bad.factor == "scale[0]" and bad.worst > 0.1
    assert 0 <= bad.input_index < 16
    assert max(rep.exact_errors) < 1e-12  # the permutations alone are exact
    with pytest.raises(sl.errors.InvarianceError, match=r"inexact factor scale\[0\].*input"):
        sl.check_invariance(net, G, x)


def test_a_well_conditioned_norm_passes_with_its_error_reported():
    """Negative control: the same net with generic running statistics passes."""
    net = _bn_net([1.0, 0.5, 1.0, 2.0])
    x = _x(16, 3)
    rep = sl.check_invariance(net, sl.symmetries(net, x), x)
    assert rep.passed and rep.exact_errors and max(rep.exact_errors) <= rep.exact_tol
    assert all(e.passed for e in rep.inexact.values())


def test_groupnorm_on_inputs_with_variance_near_eps_is_not_passed():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4, eps=1e-3), nn.ReLU(),
                        nn.Conv2d(4, 2, 1)).double().eval()  # fmt: skip
    with torch.no_grad():
        net[0].bias.zero_()
    x = _x(3, 2, 5, 5, scale=1e-3)
    rep = sl.check_invariance(net, sl.symmetries(net, x), x, raise_on_failure=False)
    assert not rep.passed and rep.culprit() is not None
    assert "groupnorm" in rep.culprit().note
    x_big = _x(3, 2, 5, 5, scale=10.0)
    assert sl.check_invariance(net, sl.symmetries(net, x_big), x_big, tol=1e-3).passed
