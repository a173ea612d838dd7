"""W-asymmetric layers and FiGLU: reproducible masks, fixed entries, derived restrictions."""

import subprocess
import sys

import numpy as np
import torch

import symlab as sl
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
