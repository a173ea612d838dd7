"""(b) Completeness: on tiny nets the discrete part of the derived group equals brute force."""

import torch
from hypothesis import assume, event, given

import symlab as sl
from symlab.nn import MLP
from symlab.testing import strategies as sst


def _generic(model, x) -> bool:
    """No dead or constant hidden units on the data (they carry data-dependent symmetries)."""
    for node in model.graph.nodes():
        if node.op == "layernorm" and node.width < 3:
            return False  # LayerNorm over 2 units outputs ±(1, -1): a degenerate, binary layer
    vals = model.forward_all(x)
    for node in model.graph.nodes():
        if node.op in ("activation", "figlu"):
            v = vals[node.name]
            if bool((v.std(0) < 1e-6).any()):
                return False
    for name, buf in model.state_dict().items():
        if name.endswith(".mask") and bool((buf.sum(0) == 0).any()):
            return False  # an input unit no trainable weight reads: disconnected
    return True


def _x(model, n=48):
    d = int(model.graph.input_nodes[0].width)
    return torch.randn(n, d, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 2


@given(sst.models(max_hidden=2, max_width=4))
def test_discrete_group_equals_brute_force(model):
    x = _x(model)
    assume(_generic(model, x))
    event(model.config.family)
    G = sl.symmetries(model)
    bf = sl.brute_force_group(model, x)
    missed, extra = bf.compare(G)
    assert not missed.permutations and not missed.signs, f"derivation missed {missed}"
    assert not extra.permutations and not extra.signs, f"derivation invented {extra}"


def test_brute_force_counts_known_groups():
    torch.manual_seed(0)
    cases = {
        "relu": 24 * 6,  # S_4 × S_3, no signs
        "tanh": 24 * 6 * 2**4 * 2**3,  # hyperoctahedral per layer
        "gelu": 24 * 6,
    }
    for act, order in cases.items():
        net = sst.randomize(MLP([3, 4, 3, 2], act, dtype=torch.float64), 1)
        bf = sl.brute_force_group(net, _x(net))
        assert bf.order == order, act
        assert sl.symmetries(net).order == order


def test_brute_force_finds_shared_mask_symmetry_and_derivation_agrees():
    """F = 0 and the same mask for every unit: units are interchangeable again (full S_n)."""
    net = sst.randomize(
        MLP(
            [3, 4, 2],
            "tanh",
            asym={"num_fixed": [1, 0], "kappa": 0.0, "shared_mask": True},
            dtype=torch.float64,
        ),
        2,
    )
    G = sl.symmetries(net)
    perm = next(f for f in G.factors if f.kind == "permutation")
    assert perm.blocks is None and perm.order == 24
    bf = sl.brute_force_group(net, _x(net))
    assert bf.compare(G)[0].order == 0 or not bf.compare(G)[0].permutations
    assert len(bf.permutations) == 24


def test_brute_force_refuses_big_nets():
    net = MLP([3, 9, 9, 2])
    try:
        sl.brute_force_group(net, torch.randn(4, 3))
    except sl.errors.TooLargeError as e:
        assert "candidates" in str(e)
    else:
        raise AssertionError("expected TooLargeError")
