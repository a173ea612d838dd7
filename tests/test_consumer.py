"""The shared-consumer check and the midpoint bending (the prediction's extension to layers
whose read-out both runs share)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import symlab as sl
from symlab.connect import interpolate_state
from symlab.identify import consumer_check, identifiability, predict_alignment_free


class SumNet(nn.Module):
    """``y = Σ_h ReLU(W x + b)``: a hidden layer read by a sum (the sandbox's read-out), here a
    parameter equal to ones in both runs, so the derived group still sees the hidden units."""

    def __init__(self, d: int, width: int, seed: int, mask: torch.Tensor | None = None) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.hidden = nn.Linear(d, width)
        self.readout = nn.Linear(width, 1, bias=False)
        nn.init.ones_(self.readout.weight)
        if mask is not None:
            with torch.no_grad():
                self.hidden.weight.mul_(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(x)))


def _mid_output(a: nn.Module, b: nn.Module, x: torch.Tensor) -> torch.Tensor:
    mid = sl.stateless.call_with_state(
        a, interpolate_state(a.state_dict(), b.state_dict(), 0.5), (x,)
    )
    return mid.double()


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 6), width=st.integers(2, 12), p=st.sampled_from([1.0, 0.5]),
       seeds=st.tuples(st.integers(0, 99), st.integers(0, 99)))  # fmt: skip
def test_bending_of_a_fixed_sum_is_the_midpoint_defect_and_the_relu_formula(d, width, p, seeds):
    """With a shared fixed read-out the check says shared, and the bending equals both the
    midpoint model's output defect (a first layer: exact) and the derivation's ReLU formula
    ``E[(Σ_i ½ min(|z_A|, |z_B|) [sign differs])²]``."""
    g = torch.Generator().manual_seed(seeds[0] * 100 + seeds[1])
    mask = (torch.rand(width, d, generator=g) < p).float() if p < 1 else None
    a, b = SumNet(d, width, seeds[0], mask), SumNet(d, width, seeds[1] + 100, mask)
    x = torch.randn(128, d, generator=g)
    c = consumer_check(a, b, x, "hidden")
    assert c.shared, c.why
    with torch.no_grad():
        za, zb = a.hidden(x).double(), b.hidden(x).double()
        ya, yb = a(x).double(), b(x).double()
    defect = float((_mid_output(a, b, x) - (ya + yb) / 2).pow(2).mean())
    flips = (za > 0) != (zb > 0)
    formula = float(((torch.minimum(za.abs(), zb.abs()) / 2 * flips).sum(1) ** 2).mean())
    assert c.bending == pytest.approx(defect, rel=1e-4, abs=1e-9)
    assert c.bending == pytest.approx(formula, rel=1e-4, abs=1e-9)


def test_trained_heads_are_not_shared_and_the_rule_falls_back_to_units():
    a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    x = torch.randn(64, 4)
    c = consumer_check(a, b, x, "layers.0.linear")
    assert not c.shared and c.bending != c.bending and "differs" in c.why  # NaN bending
    rep = identifiability(a, b, x)
    fc = rep.layers["layers.0.linear"].function_class
    assert not fc.shared_consumer
    pred = predict_alignment_free(rep)
    assert not pred.low_loss and "not identifiable" in pred.reason


def test_a_layer_called_twice_is_refused_not_stitched():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(torch.relu(self.lin(x))).sum(1, keepdim=True)

    c = consumer_check(Twice(), Twice(), torch.randn(16, 3), "lin")
    assert not c.shared and "2 times" in c.why


def test_midpoint_consumer_must_match_too():
    """Heads equal at both ends but the path between them differs would not be shared: here the
    heads differ, so the stitching at either end already fails."""
    a, b = SumNet(3, 4, 0), SumNet(3, 4, 1)
    with torch.no_grad():
        b.readout.weight.mul_(2.0)
    assert not consumer_check(a, b, torch.randn(32, 3), "hidden").shared


def test_shared_consumer_decides_by_bending_whatever_the_units():
    """B = A with its hidden units permuted: the units are not where A has them, but the sum
    read-out does not care; the verdict follows the bending, which the measured barrier
    follows too."""
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    y = torch.relu(x[:, :1] + x[:, 1:2])
    a = SumNet(3, 6, 0)
    # every unit a positive multiple of one direction: a permuted copy never flips a sign
    with torch.no_grad():
        a.hidden.weight.copy_(torch.rand(6, 1) * torch.tensor([[1.0, 1.0, 0.0]]))
        a.hidden.bias.zero_()
    b = SumNet(3, 6, 0)
    perm = torch.tensor([3, 5, 0, 1, 4, 2])
    b.load_state_dict({"hidden.weight": a.hidden.weight[perm], "hidden.bias": a.hidden.bias[perm],
                       "readout.weight": a.readout.weight})  # fmt: skip
    rep = identifiability(a, b, (x, y))
    fc = rep.layers["hidden"].function_class
    assert fc.shared_consumer and fc.bending < 1e-10
    pred = predict_alignment_free(rep)
    assert pred.low_loss and "slot order does not matter" in pred.reason
    units_only = predict_alignment_free(rep, shared_consumer=False)
    assert not units_only.low_loss  # the permuted units are not in A's slots
    # a permuted copy whose units point different ways bends: predicted and measured barrier
    with torch.no_grad():
        b.hidden.weight.copy_(torch.randn(6, 3))
        b.hidden.bias.copy_(torch.randn(6))
    rep = identifiability(a, b, (x, y))
    fc = rep.layers["hidden"].function_class
    assert fc.shared_consumer and fc.bending > 0
    assert predict_alignment_free(rep, bending_tolerance=fc.bending / 2).low_loss is False
    assert predict_alignment_free(rep, bending_tolerance=fc.bending * 2).low_loss is True


def test_runs_of_different_architectures_are_refused_by_name():
    with pytest.raises(sl.errors.ArchitectureMismatchError):
        consumer_check(SumNet(3, 4, 0), SumNet(3, 5, 0), torch.randn(8, 3), "hidden")


def test_inputs_that_do_not_fit_are_refused_by_name():
    with pytest.raises(sl.errors.DataError):
        consumer_check(SumNet(3, 4, 0), SumNet(3, 4, 1), torch.randn(8, 5), "hidden")
    with pytest.raises(sl.errors.DataError):  # a layer the model does not have
        consumer_check(SumNet(3, 4, 0), SumNet(3, 4, 1), torch.randn(8, 3), "nope")


def test_negative_control_the_bending_check_tells_wrong_formulas_apart():
    """The equalities of the property test above discriminate: dropping the sign-disagreement
    mask, or the ½, gives another number on a pair whose units disagree in sign."""
    g = torch.Generator().manual_seed(3)
    a, b = SumNet(3, 6, 0), SumNet(3, 6, 101)
    x = torch.randn(128, 3, generator=g)
    c = consumer_check(a, b, x, "hidden")
    with torch.no_grad():
        za, zb = a.hidden(x).double(), b.hidden(x).double()
    flips = (za > 0) != (zb > 0)
    assert flips.any()
    no_mask = float(((torch.minimum(za.abs(), zb.abs()) / 2).sum(1) ** 2).mean())
    no_half = float(((torch.minimum(za.abs(), zb.abs()) * flips).sum(1) ** 2).mean())
    assert c.bending != pytest.approx(no_mask, rel=1e-4)
    assert c.bending != pytest.approx(no_half, rel=1e-4)
