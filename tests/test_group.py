"""SymmetryGroup contract: sizes, factors, elements, action, spec, display."""

import math

import sympy as sp
import torch

import symlab as sl
from symlab.nn import MLP
from symlab.testing import strategies as sst


def test_published_sizes_relu_mlp():
    G = sl.symmetries(sl.graph.mlp([784, 512, 512, 512, 10], "relu"))
    assert math.isclose(G.log10_order, 3 * math.lgamma(513) / math.log(10), rel_tol=1e-12)
    assert G.order == sp.factorial(512) ** 3
    assert G.dimension == 3 * 512
    assert len(G.permutation_spec()) == 3


def test_lim_mlp_standard_vs_asymmetric():
    widths = [784, 512, 512, 512, 10]
    std = sl.symmetries(sl.graph.mlp(widths, "gelu", norm="layernorm"))
    # per hidden layer: S_512, and before LayerNorm a common scale and a common sign
    assert std.order == sp.factorial(512) ** 3 * 2**3
    # each linear map read only by its LayerNorm also has the mean shift W + 1vᵀ, b + c1
    assert std.dimension == 3 + (784 + 1) + 2 * (512 + 1)
    assert all(not f.exact for f in std.factors if f.kind == "common_scaling")
    asym = sl.symmetries(MLP(widths, "gelu", norm="layernorm", asym="lim"))
    assert not any(f.kind == "permutation" for f in asym.factors)
    assert asym.permutation_spec() == {}


def test_identity_activation_is_gl():
    G = sl.symmetries(sl.graph.mlp([3, 5, 2], "identity"))
    assert [f.kind for f in G.factors] == ["GL"]
    assert G.dimension == 25 and G.order == 1


def test_sigmoid_flips_need_the_next_bias():
    with_bias = sl.symmetries(sl.graph.mlp([3, 5, 2], "sigmoid", bias=True))
    no_bias = sl.symmetries(sl.graph.mlp([3, 5, 2], "sigmoid", bias=False))
    assert [f.kind for f in with_bias.factors] == ["permutation", "flip"]
    assert [f.kind for f in no_bias.factors] == ["permutation"]


def test_factors_name_the_axes_they_move():
    G = sl.symmetries(sl.graph.mlp([3, 5, 5, 2], "relu", norm="batchnorm"))
    spec = G.permutation_spec()
    p0 = spec["P[layers.0.linear]"]
    assert ("layers.0.linear.weight", 0) in p0 and ("layers.1.linear.weight", 1) in p0
    assert ("layers.0.norm.running_mean", 0) in p0 and ("layers.0.norm.weight", 0) in p0
    assert all(k != "layers.0.norm.num_batches_tracked" for k, _ in p0)


def test_act_moves_buffers_but_never_fixed_data():
    net = sst.randomize(
        MLP([4, 5, 3], "relu", norm="batchnorm", asym={"num_fixed": [2, 0], "kappa": 0.0},
            dtype=torch.float64),
        0,
    )  # fmt: skip
    G = sl.symmetries(net)
    sd = net.state_dict()
    out = G.act(G.sample(3), sd)
    assert list(out) == list(sd)
    assert torch.equal(out["layers.0.linear.mask"], sd["layers.0.linear.mask"])
    assert torch.equal(out["layers.0.linear.fixed"], sd["layers.0.linear.fixed"])
    assert not torch.equal(out["layers.0.norm.running_var"], sd["layers.0.norm.running_var"])
    x = torch.randn(16, 4, dtype=torch.float64)
    assert sl.check_invariance(net, G, x).passed


def test_identity_element_changes_nothing():
    net = MLP([3, 4, 4, 2], "tanh", norm="layernorm")
    G = sl.symmetries(net)
    sd = net.state_dict()
    out = G.act(G.identity(), sd)
    assert all(torch.equal(out[k], sd[k]) for k in sd)


def test_sample_is_reproducible_and_varies():
    G = sl.symmetries(MLP([3, 8, 2], "relu"))
    a, b, c = G.sample(torch.Generator().manual_seed(0)), G.sample(0), G.sample(1)
    assert all(torch.equal(a[k], b[k]) for k in a.values)
    assert any(not torch.equal(a[k], c[k]) for k in a.values)


def test_repr_and_latex():
    G = sl.symmetries(sl.graph.mlp([784, 128, 128, 10], "relu"))
    assert G._repr_latex_() == (
        r"$S_{128} \times \mathbb{R}_{>0}^{128} \times S_{128} \times \mathbb{R}_{>0}^{128}$"
    )
    text = repr(G)
    assert "S_128 × R_{>0}^128 × S_128 × R_{>0}^128" in text
    assert "dimension = 256" in text and "P[layers.0.linear]" in text


def test_symbolic_log10_order_and_no_elements():
    n = sp.Symbol("n")
    G = sl.symmetries(sl.graph.mlp([3, n, 2], "relu"))
    assert sp.simplify(G.log10_order - sp.log(sp.factorial(n), 10)) == 0
    try:
        G.sample(0)
    except sl.errors.WidthError as e:
        assert "symbolic" in str(e)
    else:
        raise AssertionError("expected WidthError")
