"""W-asymmetric layers and FiGLU: reproducible masks, fixed entries, derived restrictions."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import symlab as sl
from symlab.errors import InvarianceError
from symlab.nn import MLP, FiGLU, WAsymLinear
from symlab.symmetry.refine import refine_units


def test_masks_are_reproducible_across_processes():
    code = (
        "from symlab.nn import WAsymLinear; l = WAsymLinear(16, 8, num_fixed=5, seed=3);"
        "print(l.mask.flatten().tolist(), l.fixed.sum().item())"
    )
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}  # fmt: skip
    assert len(outs) == 1
    here = WAsymLinear(16, 8, num_fixed=5, seed=3)
    assert str(here.mask.flatten().tolist()) in outs.pop()


def test_fixed_entries_per_row_and_zero_gradient():
    layer = WAsymLinear(10, 6, num_fixed=4, kappa=1.0, seed=0)
    assert ((layer.mask == 0).sum(1) == 4).all()
    assert ((layer.fixed != 0) <= (layer.mask == 0)).all()  # F lives on fixed entries only
    layer(torch.randn(5, 10)).pow(2).sum().backward()
    assert (layer.weight.grad[layer.mask == 0] == 0).all()
    assert (layer.weight.grad[layer.mask == 1] != 0).any()
    assert not any(b.requires_grad for b in layer.buffers())


def test_lim_preset():
    net = MLP([784, 512, 512, 512, 10], "gelu", norm="layernorm", asym="lim")
    sd = net.state_dict()
    counts = [int((sd[f"{k}.mask"] == 0).sum(1)[0]) for k in
              ["layers.0.linear", "layers.1.linear", "layers.2.linear", "head"]]  # fmt: skip
    assert counts == [64, 64, 64, 256]


def test_random_fixed_weights_make_units_distinguishable():
    G = sl.symmetries(MLP([6, 8, 8, 3], "relu", asym={"num_fixed": 3, "kappa": 1.0}))
    assert G.order == 1 and not G.permutation_spec()


def test_shared_zero_mask_gives_back_the_full_group():
    net = MLP([6, 8, 3], "relu", asym={"num_fixed": [2, 0], "kappa": 0.0, "shared_mask": True})
    G = sl.symmetries(net)
    perm = next(f for f in G.factors if f.kind == "permutation")
    assert perm.blocks is None and G.order == 40320
    x = torch.randn(16, 6)
    assert sl.check_invariance(net.double(), G, x.double()).passed


def test_two_identical_units_form_a_block():
    net = MLP([5, 6, 2], "tanh", asym={"num_fixed": [2, 0], "kappa": 1.0})
    sd = net.state_dict()
    for key in ("layers.0.linear.mask", "layers.0.linear.fixed"):
        sd[key][3] = sd[key][1]  # units 1 and 3 now carry identical fixed data
    net.load_state_dict(sd)
    G = sl.symmetries(net)
    perm = next(f for f in G.factors if f.kind == "permutation")
    assert perm.blocks is not None and (1, 3) in perm.blocks and perm.order == 2


def test_figlu_random_gate_is_trivial_and_zero_gate_is_symmetric():
    net = MLP([4, 6, 2], "figlu")
    assert not any(f.kind == "permutation" for f in sl.symmetries(net).factors)
    net.get_submodule("layers.0.act").gate.zero_()
    G = sl.symmetries(net)
    assert next(f for f in G.factors if f.kind == "permutation").order == 720
    assert sl.check_invariance(net.double(), G, torch.randn(8, 4).double()).passed


def test_refinement_is_sound_on_structured_data():
    # an identity matrix shared by two spaces: only joint (diagonal) permutations preserve it;
    # refinement must not claim the full S_3 × S_3 (it reports the trivial, sound subgroup)
    blocks = refine_units({"a": 3, "b": 3}, [(np.eye(3), ("a", "b"))])
    assert blocks == {"a": [[0], [1], [2]], "b": [[0], [1], [2]]}
    # the same fixed row for every unit: all interchangeable
    same = np.tile(np.array([[1.0, 0.0, 2.0]]), (4, 1))
    assert refine_units({"h": 4}, [(same, ("h", None))]) == {"h": [[0, 1, 2, 3]]}


def test_figlu_module():
    act = FiGLU(5, seed=1)
    x = torch.randn(3, 5)
    torch.testing.assert_close(act(x), torch.sigmoid(x @ act.gate.T) * x)


def _masked_sigmoid_nets():
    """κ = 0 W-asymmetric layers after sigmoids, built and traced, with large values at the
    masked weight entries (which the layer never applies: W and D ⊙ W differ a lot)."""
    torch.manual_seed(0)
    built = MLP([3, 4, 4, 2], "sigmoid", asym={"num_fixed": 1, "kappa": 0.0})
    traced = torch.nn.Sequential(
        WAsymLinear(3, 4, num_fixed=1, kappa=0.0, seed=1), torch.nn.Sigmoid(),
        WAsymLinear(4, 2, num_fixed=2, kappa=0.0, seed=2),
    )  # fmt: skip
    for net in (built, traced):
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, WAsymLinear):
                    m.weight[m.mask == 0] = 10.0
        yield net.double()


def test_sigmoid_sign_flips_through_masked_layers():
    """σ(−z) = 1 − σ(z): a masked layer with F = 0 absorbs the shift as b − (D ⊙ W) c. The
    derived signs equal brute force's and keep the function (they were missed before)."""
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for net in _masked_sigmoid_nets():
        G = sl.symmetries(net)
        hidden = 8 if isinstance(net, MLP) else 4
        assert G.order % 2**hidden == 0  # a sign flip for every sigmoid unit
        assert sl.check_invariance(net, G, x).passed
        if isinstance(net, MLP):
            missed, extra = sl.brute_force_group(net, x).compare(G)
            assert not missed.signs and not extra.signs


def test_the_shift_goes_through_the_applied_weight(monkeypatch):
    """Negative control: absorbing the shift through W instead of D ⊙ W breaks invariance."""
    import symlab.symmetry.builtin_rules as br

    plain = br._affine_act
    monkeypatch.setattr(br, "_affine_act", lambda p, ti, to, mask=None: plain(p, ti, to))
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = next(_masked_sigmoid_nets())
    with pytest.raises(InvarianceError, match="changed the outputs"):
        sl.check_invariance(net, sl.symmetries(net), x)


@pytest.mark.parametrize("bias", [True, False])
def test_fixed_values_keep_the_sigmoid_unflipped(bias):
    """κ ≠ 0: F would have to flip too, so neither the derivation nor brute force finds flips
    (brute force's trial flips go through the action, which absorbs through F + D ⊙ W)."""
    asym = {"num_fixed": 1, "kappa": 1.0}
    net = MLP([3, 2, 2], "sigmoid", asym=asym, bias=bias, dtype=torch.float64)
    x = torch.randn(48, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G = sl.symmetries(net)
    assert G.order == 1
    missed, extra = sl.brute_force_group(net, x).compare(G)
    assert not missed.signs and not extra.signs


def test_sigmoid_flips_through_a_masked_conv():
    from symlab.nn.asymmetric_conv import WAsymConv2d

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.Sigmoid(), WAsymConv2d(3, 4, 3, num_fixed=2, kappa=0.0),
        torch.nn.Flatten(), torch.nn.Linear(64, 2),
    ).double()  # fmt: skip
    with torch.no_grad():
        net[2].weight[net[2].mask == 0] = 10.0
    x = torch.randn(8, 2, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    G = sl.symmetries(net, x[:1])
    assert "flip" in {f.kind for f in G.factors}  # the sigmoid's channels flip
    assert sl.check_invariance(net, G, x).passed
