"""Hand-written RMSNorm / LayerNorm (symlab.frontend.patterns.norm): every written form becomes
one norm node with the module's symmetries, on both front-ends, on miniatures and on the real
transformers classes; brute force agrees on the discrete part; near misses stay unmatched."""

from __future__ import annotations

import pytest
import torch
from patterns_util import force_export, scramble
from torch import nn

import symlab as sl
from symlab.errors import UnsupportedOpError

EPS = 1e-6


class HandNorm(nn.Module):
    """RMSNorm / LayerNorm the ways real code writes them."""

    def __init__(self, d: int, style: str) -> None:
        super().__init__()
        self.style = style
        self.weight = nn.Parameter(torch.randn(d))
        if style in ("ln_hand", "ln_var"):
            self.bias = nn.Parameter(torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, w = self.style, self.weight
        if s == "llama":  # cast, pow, mean, rsqrt, weight first, cast back
            dt = x.dtype
            h = x.to(torch.float64)
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + EPS)
            return w * h.to(dt)
        if s == "square":
            return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + EPS) * w
        if s == "xx":  # x * x, divided by the root
            return w * (x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + EPS))
        if s == "pow_op":  # ** and a power of -1/2
            return x * (torch.mean(x**2, -1, True) + EPS) ** -0.5 * w
        if s == "eps_out":  # eps outside the root
            return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + EPS) * w
        if s == "t5":  # T5LayerNorm: no mean subtraction, cast for the statistic
            v = x.to(torch.float64).pow(2).mean(-1, keepdim=True)
            return w * (x * torch.rsqrt(v + EPS))
        if s == "gemma":  # (1 + weight)
            h = x.double()
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + EPS)
            return (h * (1.0 + w.double())).type_as(x)
        u = x.mean(-1, keepdim=True)
        if s == "ln_hand":  # BERT-era LayerNorm
            var = (x - u).pow(2).mean(-1, keepdim=True)
            return w * ((x - u) / torch.sqrt(var + EPS)) + self.bias
        assert s == "ln_var"
        return (x - u) * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + EPS) * w + self.bias


RMS_STYLES = ["llama", "square", "xx", "pow_op", "eps_out", "t5", "gemma"]
OPS = {"gemma": "rmsnorm_offset", "ln_hand": "layernorm", "ln_var": "layernorm"}


def _net(norm: nn.Module, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), norm, nn.Linear(4, 2)).double()


def _kinds(G: sl.SymmetryGroup) -> list[str]:
    return [f.kind for f in G.factors]


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
@pytest.mark.parametrize("style", [*RMS_STYLES, "ln_hand", "ln_var"])
def test_every_form_is_one_norm_with_the_module_group(style, export, monkeypatch):
    if export:
        force_export(monkeypatch)
    net = _net(HandNorm(4, style))
    x = torch.randn(6, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert G.graph.frontend == ("torch.export" if export else "torch.fx")
    assert [n.op for n in G.graph.nodes()] == ["input", "linear", OPS.get(style, "rmsnorm"),
                                               "linear", "output"]  # fmt: skip
    if style.startswith("ln"):  # common scale and sign in; scale and sign per unit out
        assert _kinds(G) == ["permutation", "common_scaling", "common_sign", "scaling", "sign",
                             "translation"]  # fmt: skip
    else:  # mean(x²) ignores each unit's sign
        assert _kinds(G) == ["permutation", "common_scaling", "sign", "scaling", "sign"]
    assert not G.exact  # up to eps
    assert sl.check_invariance(net, G, x).passed


@pytest.mark.parametrize("style", ["square", "t5", "gemma", "ln_hand"])
def test_brute_force_agrees_both_ways(style):
    """Every joint permutation and sign pattern of the hidden space that keeps the outputs is
    derived, and nothing derived changes them (RMSNorm: every sign pattern; LayerNorm: only the
    common sign)."""
    net = _net(HandNorm(4, style))
    x = torch.randn(16, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    bf = sl.brute_force_group(net, x, tol=1e-6)
    missed, extra = bf.compare(G)
    assert not (missed.permutations or missed.signs or extra.permutations or extra.signs)
    assert len(bf.signs) == (2 if style == "ln_hand" else 16) and len(bf.permutations) == 24


def test_gemma_offset_is_not_a_plain_scale_of_the_weight():
    """Gemma's ``(1 + w)``: scaling unit i of the output by d_i maps w_i to d_i (1 + w_i) - 1
    (what the rule does); scaling w itself (the plain RMSNorm action) changes the outputs."""
    net = _net(HandNorm(4, "gemma"))
    x = torch.randn(6, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    d = torch.tensor([0.5, 2.0, 3.0, 0.7], dtype=torch.float64)
    h = G.element({"scale[1]": d})
    sd = dict(net.state_dict())
    good = G.act(h, sd)
    assert torch.allclose(good["1.weight"], d * (1 + sd["1.weight"]) - 1)
    ref = torch.func.functional_call(net, sd, (x,))
    assert torch.allclose(torch.func.functional_call(net, good, (x,)), ref, atol=1e-10)
    wrong = dict(good, **{"1.weight": d * sd["1.weight"]})
    assert not torch.allclose(torch.func.functional_call(net, wrong, (x,)), ref, atol=1e-3)


def test_layernorm_per_unit_sign_is_not_a_symmetry():
    """Negative control: a sign per unit on a LayerNorm's input (with the weight compensating)
    changes the outputs, which is why only a common sign is derived."""
    net = _net(HandNorm(4, "ln_hand"))
    x = torch.randn(6, 3, dtype=torch.float64)
    sd = dict(net.state_dict())
    s = torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    moved = dict(sd, **{"0.weight": sd["0.weight"] * s[:, None], "0.bias": sd["0.bias"] * s,
                        "1.weight": sd["1.weight"] * s})  # fmt: skip
    ref = torch.func.functional_call(net, sd, (x,))
    assert not torch.allclose(torch.func.functional_call(net, moved, (x,)), ref, atol=1e-3)


class NearMiss(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
        self.weight = nn.Parameter(torch.randn(4))

    def forward(self, x):
        h = self.a(x)
        if self.how == "axis":  # a statistic over the batch, not the units
            v = h.pow(2).mean(0, keepdim=True)
            return self.b(h * torch.rsqrt(v + EPS) * self.weight)
        if self.how == "reader":  # the statistic is also read elsewhere
            v = h.pow(2).mean(-1, keepdim=True)
            return self.b(h * torch.rsqrt(v + EPS) * self.weight) + v
        assert self.how == "cube"  # not a square
        v = h.pow(3).mean(-1, keepdim=True)
        return self.b(h * torch.rsqrt(v + EPS) * self.weight)


@pytest.mark.parametrize("how", ["axis", "reader", "cube"])
def test_near_misses_are_not_norms(how):
    net = NearMiss(how).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    try:
        G = sl.symmetries(net, x)
    except UnsupportedOpError:
        return  # the lone ops are refused: fail closed
    assert not {"rmsnorm", "layernorm"} & {n.op for n in G.graph.nodes()}
    assert sl.check_invariance(net, G, x).passed


# -- the real transformers classes ----------------------------------------------------------


def _hf_norm(name: str) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    models = transformers.models
    cls = {
        "llama": models.llama.modeling_llama.LlamaRMSNorm,
        "mistral": models.mistral.modeling_mistral.MistralRMSNorm,
        "qwen2": models.qwen2.modeling_qwen2.Qwen2RMSNorm,
        "gemma": models.gemma.modeling_gemma.GemmaRMSNorm,
        "t5": models.t5.modeling_t5.T5LayerNorm,
    }[name]
    return scramble(cls(4, eps=EPS), seed=1)


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
@pytest.mark.parametrize("name", ["llama", "mistral", "qwen2", "gemma", "t5"])
def test_transformers_norm_classes(name, export, monkeypatch):
    if export:
        force_export(monkeypatch)
    net = _net(_hf_norm(name))
    x = torch.randn(6, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    op = "rmsnorm_offset" if name == "gemma" else "rmsnorm"
    assert [n.op for n in G.graph.nodes()][2] == op
    assert _kinds(G) == ["permutation", "common_scaling", "sign", "scaling", "sign"]
    # the classes compute the statistic in float32: tolerance of float32
    assert sl.check_invariance(net, G, x, tol=1e-4).passed


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_a_norm_called_twice_ties_its_calls(export, monkeypatch):
    """One hand-written RMSNorm applied at two depths: two norm nodes reading the same weight,
    their spaces tied."""
    if export:
        force_export(monkeypatch)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
            self.norm = HandNorm(4, "square")

        def forward(self, x):
            return self.c(self.norm(self.b(self.norm(self.a(x)))))

    torch.manual_seed(0)
    net = Twice().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    norms = [n for n in G.graph.nodes() if n.op == "rmsnorm"]
    assert len(norms) == 2 and {n.key(n.params[0]) for n in norms} == {"norm.weight"}
    assert len([f for f in G.factors if f.kind == "permutation"]) == 1  # both spaces tied
    assert sl.check_invariance(net, G, x).passed
