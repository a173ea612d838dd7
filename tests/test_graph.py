"""ArchGraph, builders with symbolic widths, build/trace round trips."""

import sympy as sp
import torch
from torch import nn

import symlab as sl
from symlab.frontend import trace
from symlab.graph import ArchGraph, mlp
from symlab.nn import MLP, WAsymLinear


def test_mlp_graph_names_match_state_dict():
    g = mlp([5, 7, 7, 3], "relu", norm="batchnorm", residual=True)
    net = g.build(seed=0)
    assert set(net.state_dict()) == set(g.state_keys())
    for key, (_, spec) in g.state_keys().items():
        assert tuple(net.state_dict()[key].shape) == tuple(spec.shape)
    assert [n.op for n in g.nodes()][:4] == ["input", "linear", "batchnorm", "activation"]
    assert "layers.1.add" in [n.name for n in g.nodes()]


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = MLP([4, 6, 2], seed=3)
    after = torch.rand(1)
    b = MLP([4, 6, 2], seed=3)
    c = MLP([4, 6, 2], seed=4)
    assert torch.equal(before, after)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.state_dict()["head.weight"], c.state_dict()["head.weight"])


def test_trace_graphnet_returns_its_graph():
    g = mlp([3, 4, 2], "tanh")
    assert trace(g.build()) is g
    assert trace(MLP([3, 4, 2], "tanh")) == g


def test_trace_sequential_uses_state_dict_names():
    seq = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.LayerNorm(5), nn.Linear(5, 2))
    g = trace(seq)
    assert set(g.state_keys()) == set(seq.state_dict())
    G = sl.symmetries(seq)
    # relu → LN: one common scale; LN → linear: per-unit scales and signs via γ, β
    assert G.order == sp.factorial(5) * 2**5
    assert G.dimension == 1 + 5
    sd = G.act(G.sample(0), seq.state_dict())
    assert list(sd) == list(seq.state_dict())


def test_trace_sequential_with_asymmetric_layer():
    seq = nn.Sequential(WAsymLinear(4, 6, num_fixed=2, seed=1), nn.Tanh(), nn.Linear(6, 2))
    g = trace(seq)
    assert g.node("0").op == "wasym_linear"
    assert set(g.state_keys()) == set(seq.state_dict())


def test_symbolic_widths_give_symbolic_order_and_dimension():
    d, n, m, k = sp.symbols("d n m k")
    G = sl.symmetries(mlp([d, n, m, k], activation="relu"))
    assert sp.simplify(G.order - sp.factorial(n) * sp.factorial(m)) == 0
    assert sp.simplify(G.dimension - (n + m)) == 0
    G2 = sl.symmetries(mlp([d, n, m, k], activation="tanh"))
    assert sp.simplify(G2.order - sp.factorial(n) * sp.factorial(m) * 2**n * 2**m) == 0
    assert G2.dimension == 0


def test_subs_makes_a_buildable_graph():
    n = sp.Symbol("n")
    g = mlp([3, n, 2])
    assert not g.is_concrete
    g5 = g.subs({n: 5})
    assert g5.is_concrete and g5.node("layers.0.linear").width == 5
    assert sl.symmetries(g5).order == sp.factorial(5)
    assert g.subs({"n": 5}) == g5


def test_forward_all_exposes_every_node():
    net = MLP([3, 4, 2], "relu")
    vals = net.forward_all(torch.randn(5, 3))
    assert set(vals) == {n.name for n in net.graph.nodes()}
    assert torch.equal(vals["output"], net(vals["input"]))
    assert bool((vals["layers.0.act"] >= 0).all())


def test_manual_graph_with_concat():
    g = ArchGraph()
    g.add("input", "input", width=3)
    g.add("a", "linear", ["input"], width=4)
    g.add("ra", "activation", ["a"], fn="relu")
    g.add("b", "linear", ["input"], width=2)
    g.add("tb", "activation", ["b"], fn="tanh")
    g.add("cat", "concat", ["ra", "tb"], width=6)
    g.add("head", "linear", ["cat"], width=2)
    g.add("output", "output", ["head"])
    net = g.build(seed=1).double()
    G = sl.symmetries(g)
    assert G.order == sp.factorial(4) * sp.factorial(2) * 2**2
    assert G.dimension == 4
    x = torch.randn(10, 3, dtype=torch.float64)
    assert sl.check_invariance(net, G, x).passed


def test_every_activation_name_has_a_module_and_back():
    """The IR's activation names, nn's module table and the front-end's reader agree."""
    from symlab.frontend.modules import _ACT_TYPES
    from symlab.graph.activations import ACTIVATION_NAMES
    from symlab.nn.activations import ACTIVATIONS

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS) == set(_ACT_TYPES.values())
