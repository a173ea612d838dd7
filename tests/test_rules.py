"""Users register rules for their own ops without touching symlab."""

import pytest
import torch
from torch import nn

import symlab as sl
from symlab.frontend import register_module_op
from symlab.graph import ArchGraph
from symlab.nn.graphnet import MODULE_BUILDERS
from symlab.symmetry import Admits, Mag, OpSymmetry, Sign, rule


class Square(nn.Module):
    """x ↦ x²: even, and scaling by c multiplies the output by c² (no sign symmetry kept)."""

    def forward(self, x):
        return x * x


def test_register_a_rule_for_a_custom_module():
    @rule("square_test")
    def square(node, graph):
        x = graph.inputs(node.name)[0]
        # permutations only: a scale c on the input becomes c² on the output (not tied)
        return OpSymmetry(tie=[(x, node.name)], admits=[(x, Admits(Mag.NONE, Sign.NONE), "x²")])

    register_module_op(Square, lambda m, w: ("square_test", w, {}))
    MODULE_BUILDERS["square_test"] = lambda n, w: Square()
    seq = nn.Sequential(nn.Linear(3, 4), Square(), nn.Linear(4, 2)).double()
    G = sl.symmetries(seq)
    assert [f.kind for f in G.factors] == ["permutation"]
    assert sl.check_invariance(seq, G, torch.randn(8, 3, dtype=torch.float64)).passed
    assert "square_test" in sl.symmetry.registered_ops()

    with pytest.raises(ValueError, match="already has a rule"):
        rule("square_test")(square.derive)


def test_rule_signature_is_validated():
    with pytest.raises(TypeError, match=r"must take \(node, graph\)"):

        @rule("bad_sig_test")
        def bad(node):
            return OpSymmetry()


def test_params_without_action_fail_closed():
    @rule("param_op_test")
    def p(node, graph):
        return OpSymmetry(tie=[(graph.inputs(node.name)[0], node.name)])

    from symlab.graph.archgraph import ParamSpec

    g = ArchGraph()
    g.add("input", "input", width=3)
    g.add("a", "linear", ["input"], width=4)
    g.add("p", "param_op_test", ["a"], params=[ParamSpec("w", (4,), ("out",))])
    g.add("h", "linear", ["p"], width=2)
    g.add("output", "output", ["h"])
    G = sl.symmetries(g)
    sd = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4), "p.w": torch.randn(4),
          "h.weight": torch.randn(2, 4), "h.bias": torch.randn(2)}  # fmt: skip
    with pytest.raises(sl.errors.UnsupportedOpError, match="defines no action"):
        G.act(G.sample(0), sd)


def test_register_a_rule_for_a_function():
    from symlab.frontend import register_function

    class UsesSin(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)

        def forward(self, x):
            return self.b(torch.sin(self.a(x)))

    x = torch.randn(6, 3, dtype=torch.float64)
    model = UsesSin().double()
    with pytest.raises(sl.errors.UnsupportedOpError, match="register_function"):
        sl.symmetries(model, x)

    @rule("sin_test")
    def sin_rule(node, graph):  # sin is odd: permutations and sign flips pass through
        x_in = graph.inputs(node.name)[0]
        return OpSymmetry(
            tie=[(x_in, node.name)], admits=[(x_in, Admits(Mag.NONE, Sign.DIAG), "sin")]
        )

    register_function(torch.sin, "sin_test")
    G = sl.symmetries(model, x)
    assert G.order == 120 * 2**5
    assert sl.check_invariance(model, G, x).passed
