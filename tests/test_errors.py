"""Bad input: a named SymlabError saying what was wrong, for each kind."""

import pytest
import sympy as sp
import torch
from torch import nn

import symlab as sl
from symlab import errors
from symlab.graph import ArchGraph, mlp
from symlab.nn import MLP


def test_unknown_op_fails_closed():
    g = ArchGraph()
    g.add("input", "input", width=3)
    g.add("mystery", "mystery_op", ["input"])
    g.add("output", "output", ["mystery"])
    with pytest.raises(errors.UnsupportedOpError, match=r"'mystery'.*mystery_op.*rule"):
        sl.symmetries(g)


def test_unknown_module_in_sequential():
    seq = nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 2))
    with pytest.raises(errors.UnsupportedOpError, match="PReLU"):
        sl.symmetries(seq)


def test_unsupported_model_type():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(errors.UnsupportedOpError, match="Custom"):
        sl.trace(Custom())


def test_state_dict_missing_extra_and_wrong_shapes():
    net = MLP([3, 4, 2])
    G = sl.symmetries(net)
    h = G.sample(0)
    sd = dict(net.state_dict())
    missing = {k: v for k, v in sd.items() if k != "head.bias"}
    with pytest.raises(errors.StateDictError, match="missing.*head.bias"):
        G.act(h, missing)
    with pytest.raises(errors.StateDictError, match="unexpected.*extra.weight"):
        G.act(h, {**sd, "extra.weight": torch.zeros(1)})
    with pytest.raises(errors.StateDictError, match=r"head.weight has shape \(2, 5\)"):
        G.act(h, {**sd, "head.weight": torch.zeros(2, 5)})


def test_non_finite_parameters():
    net = MLP([3, 4, 2])
    G = sl.symmetries(net)
    sd = dict(net.state_dict())
    sd["layers.0.linear.weight"] = sd["layers.0.linear.weight"].clone()
    sd["layers.0.linear.weight"][0, 0] = float("nan")
    with pytest.raises(errors.NonFiniteError, match="layers.0.linear.weight"):
        G.act(G.sample(0), sd)
    with pytest.raises(errors.NonFiniteError):
        sl.check_invariance(net, G, torch.full((2, 3), float("inf")))


def test_check_invariance_on_outputs_that_are_not_numbers():
    """A model that computes NaN on the inputs (``acos`` of a value past 1) cannot be checked:
    a named error says so, instead of blaming the group (whose identity would fail too)."""

    class Acos(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) + torch.acos(x).sum(-1, keepdim=True)

    net = Acos().double()
    x = torch.full((2, 3), 0.5, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert sl.check_invariance(net, G, x).passed  # in the domain: checked
    with pytest.raises(errors.NonFiniteError, match="own outputs .* not finite"):
        sl.check_invariance(net, G, x * 4)


def test_element_from_a_different_group():
    G1 = sl.symmetries(MLP([3, 4, 2]))
    G2 = sl.symmetries(MLP([3, 5, 2]))
    with pytest.raises(errors.ForeignElementError, match="different symmetry group"):
        G1.act(G2.sample(0), MLP([3, 4, 2]).state_dict())
    with pytest.raises(errors.ForeignElementError):
        G1.compose(G1.sample(0), G2.sample(0))
    with pytest.raises(errors.ForeignElementError):
        G1.inverse({"P": torch.arange(4)})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [0, -3, 2.5, "64", True, None, sp.Symbol("n", negative=True), sp.Rational(1, 2)]
)
def test_bad_widths(bad):
    with pytest.raises(errors.WidthError):
        mlp([3, bad, 2])


def test_graph_with_a_cycle():
    g = ArchGraph()
    g.add("input", "input", width=3)
    g.add("a", "linear", ["input"], width=3)
    g.add("b", "activation", ["a"], fn="relu")
    g.add("output", "output", ["b"])
    g.connect("b", "a")
    with pytest.raises(errors.GraphError, match="cycle"):
        sl.symmetries(g)


def test_graph_with_a_dangling_node():
    g = ArchGraph()
    g.add("input", "input", width=3)
    g.add("a", "linear", ["input"], width=3)
    g.add("unused", "linear", ["input"], width=4)
    g.add("output", "output", ["a"])
    with pytest.raises(errors.GraphError, match="'unused'.*dangles"):
        sl.symmetries(g)


def test_graph_reading_an_unknown_node():
    g = ArchGraph()
    g.add("input", "input", width=3)
    with pytest.raises(errors.GraphError, match="unknown node 'nope'"):
        g.add("a", "linear", ["nope"], width=3)


def test_tied_widths_must_agree():
    g = ArchGraph()
    g.add("input", "input", width=3)
    g.add("a", "linear", ["input"], width=4)
    g.add("b", "linear", ["input"], width=5)
    with pytest.raises(errors.GraphError, match="different widths"):
        g.add("s", "add", ["a", "b"])
    g2 = ArchGraph()
    g2.add("input", "input", width=3)
    g2.add("a", "linear", ["input"], width=4)
    g2.add("flat", "flatten", ["a"], width=5)  # mis-declared: the rule ties it to 'a'
    g2.add("h", "linear", ["flat"], width=2)
    g2.add("output", "output", ["h"])
    with pytest.raises(errors.GraphError, match="different widths"):
        sl.symmetries(g2)


def test_symbolic_graph_cannot_be_built():
    with pytest.raises(errors.WidthError, match="subs"):
        mlp([3, sp.Symbol("n"), 2]).build()


def test_errors_are_symlab_errors():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SymlabError)


def test_example_input_that_does_not_fit_the_model():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5)).double()
    with pytest.raises(sl.errors.SymlabError, match="shape and dtype"):
        sl.symmetries(net, torch.randn(2, 3))  # float32 input, float64 model
    with pytest.raises(sl.errors.SymlabError, match="cannot be multiplied"):
        sl.symmetries(net, torch.randn(2, 7, dtype=torch.float64))
