"""Softmax shift invariance and the attention key bias: translation factors (issue #3)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import symlab as sl

X2 = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def _translations(G: sl.SymmetryGroup) -> dict[str, int]:
    return {f.name: int(f.size) for f in G.factors if f.kind == "translation"}


def _laws(G: sl.SymmetryGroup, model: nn.Module) -> None:
    sd = model.state_dict()
    h1, h2 = G.sample(1), G.sample(2)
    a, b = G.act(G.compose(h1, h2), sd), G.act(h1, G.act(h2, sd))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-9
    c = G.act(G.inverse(h1), G.act(h1, sd))
    assert max(float((c[k] - sd[k]).abs().max()) for k in c) < 1e-9
    e = G.act(G.identity(), sd)
    assert all(torch.equal(e[k], sd[k]) for k in sd)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("head", [nn.Softmax(dim=-1), nn.LogSoftmax(dim=1)])
def test_linear_then_softmax_gets_a_translation(head: nn.Module, bias: bool) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 5, bias=bias), head).double()
    for G in (sl.symmetries(net), sl.symmetries(net, X2)):  # nn.Sequential reader and fx
        assert _translations(G) == {"T[2#logit_shift]": 4 + bias}
        assert G.dimension == 4 + bias
        assert sl.check_invariance(net, G, X2).passed
        _laws(G, net)
        h = G.sample(3)
        moved = G.act(h, net.state_dict())
        assert not torch.allclose(moved["2.weight"], net.state_dict()["2.weight"])


def test_softmax_as_a_function_and_over_conv_channels() -> None:
    class Seg(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 4, 3), nn.Conv2d(4, 3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.b(torch.relu(self.a(x))), dim=1)

    torch.manual_seed(0)
    net = Seg().double()
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert _translations(G) == {"T[b#logit_shift]": 4 * 3 * 3 + 1}
    assert sl.check_invariance(net, G, x).passed
    _laws(G, net)


def test_no_translation_where_the_shift_is_not_a_symmetry() -> None:
    torch.manual_seed(0)
    over_batch = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5), nn.Softmax(dim=0))
    assert _translations(sl.symmetries(over_batch.double(), X2)) == {}
    assert _translations(sl.symmetries(over_batch)) == {}

    class Both(nn.Module):  # the logits are an output too
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.b(torch.tanh(self.a(x)))
            return z, z.softmax(-1)

    assert _translations(sl.symmetries(Both().double(), X2)) == {}
    after_act = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Softmax(dim=-1))
    assert _translations(sl.symmetries(after_act.double(), X2)) == {}


def test_negative_control_the_shift_changes_logits() -> None:
    """The same group applied to the model without its softmax must fail: the check can fail."""
    torch.manual_seed(0)
    with_softmax = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5), nn.Softmax(-1))
    without = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5))
    without.load_state_dict(with_softmax.state_dict())
    G = sl.symmetries(with_softmax.double(), X2)
    assert not sl.check_invariance(without.double(), G, X2, raise_on_failure=False).passed


class _Block(nn.Module):
    """A user-written pre-norm block around ``nn.MultiheadAttention`` (weights not needed)."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, bias=bias)
        self.mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln(x)
        return x + self.attn(h, h, h, need_weights=False, attn_mask=self.mask)[0]


@pytest.mark.parametrize("bias", [True, False])
def test_attention_key_bias_is_free(bias: bool) -> None:
    torch.manual_seed(0)
    block = _Block(bias).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    G = sl.symmetries(block, x)
    assert {f.short() for f in G.factors if f.internal} == {"S_2", "GL_4^2"}
    assert _translations(G) == ({"T[attn#key_bias]": 8} if bias else {})
    assert sl.check_invariance(block, G, x).passed
    _laws(G, block)
    if bias:  # a shift of the query bias instead is no symmetry (negative control)
        sd = block.state_dict()
        sd["attn.in_proj_bias"] = (
            sd["attn.in_proj_bias"] + torch.cat([torch.ones(8), torch.zeros(16)]).double()
        )
        moved = _Block(bias).double()
        moved.load_state_dict(sd)
        assert not torch.allclose(moved(x), block(x))


def test_display_of_translations() -> None:
    G = sl.symmetries(nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=-1)))
    assert "(R^4,+)" in repr(G)
    assert r"(\mathbb{R}^{4}, +)" in G._repr_latex_()
    assert G.order == 1 and G.dimension == 4


def test_canonical_form_removes_translations() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4), nn.Softmax(-1)).double()
    G = sl.symmetries(net)
    sd = net.state_dict()
    moved = G.act(G.sample(5), sd)
    a, b = sl.connect.canonicalize(sd, G), sl.connect.canonicalize(moved, G)
    assert all(torch.allclose(a[k], b[k], atol=1e-8) for k in sd)
    assert float(a["2.weight"].sum(0).abs().max()) < 1e-10  # rows centred
    assert float(a["2.bias"].sum().abs()) < 1e-10
    assert sl.connect.orbit_distance(sd, moved, G) < 1e-6
    c, h = sl.connect.canonicalize(moved, G, return_element=True)
    again = G.act(h, moved)
    assert all(torch.allclose(c[k], again[k], atol=1e-10) for k in sd)


class _Hand(nn.Module):
    """Hand-written attention; ``form`` picks separate or fused projections and the weighting."""

    def __init__(self, form: str, e: int = 8, h: int = 2) -> None:
        super().__init__()
        self.form, self.h = form, h
        if form.startswith("fused"):
            self.qkv = nn.Linear(e, 3 * e)
        else:
            self.q, self.k, self.v = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)
        self.o = nn.Linear(e, e)
        self.register_buffer("causal", torch.tril(torch.ones(5, 5)).view(1, 1, 5, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        if self.form.startswith("fused"):
            q, k, v = self.qkv(x).split(e, dim=2)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        q, k, v = (z.view(b, t, self.h, e // self.h).transpose(1, 2) for z in (q, k, v))
        if self.form == "fused_sdpa":
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = q @ k.transpose(-2, -1) * 0.5
            if self.form in ("plain_inf", "fused_inf"):
                att = att.masked_fill(self.causal[:, :, :t, :t] == 0, float("-inf"))
            if self.form == "plain_zero":  # a finite fill: not shift invariant
                att = att.masked_fill(self.causal[:, :, :t, :t] == 0, 0.0)
            if self.form != "plain_linear":  # linear attention: no softmax at all
                att = att.softmax(dim=-1)
            y = att @ v
        return self.o(y.transpose(1, 2).reshape(b, t, e))


@pytest.mark.parametrize(
    ("form", "free"),
    [("plain", True), ("plain_inf", True), ("fused_inf", True), ("fused_sdpa", True),
     ("plain_zero", False), ("plain_linear", False)],
)  # fmt: skip
def test_key_bias_of_hand_written_attention(form: str, free: bool) -> None:
    torch.manual_seed(0)
    model = _Hand(form).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert any(f.name.endswith("#heads]") for f in G.factors)  # matched as attention
    shifts = _translations(G)
    assert (len(shifts) == 1 and 8 in shifts.values()) if free else not shifts
    assert sl.check_invariance(model, G, x).passed
    _laws(G, model)
    if not free and form == "plain_zero":  # the shift would indeed change the output
        sd = model.state_dict()
        sd["k.bias"] = sd["k.bias"] + torch.randn(8, dtype=torch.float64)
        moved = _Hand(form).double()
        moved.load_state_dict(sd)
        assert not torch.allclose(moved(x), model(x))


def test_additive_mask_buffer_of_minus_infinity() -> None:
    """A persistent mask buffer holding -inf is fixed data of the attention node: accepted by
    the group's actions (parameters must be finite, fixed data need not be)."""

    class Masked(_Hand):
        def __init__(self) -> None:
            super().__init__("plain")
            self.register_buffer("mask", torch.triu(torch.full((5, 5), float("-inf")), 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, e = x.shape
            q, k, v = (z(x).view(b, t, 2, 4).transpose(1, 2) for z in (self.q, self.k, self.v))
            att = (q @ k.transpose(-2, -1) + self.mask).softmax(dim=-1)
            return self.o((att @ v).transpose(1, 2).reshape(b, t, e))

    torch.manual_seed(0)
    model = Masked().double()
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert any(f.name.endswith("#heads]") for f in G.factors)
    assert len(_translations(G)) == 1  # an additive mask keeps the key bias free
    assert sl.check_invariance(model, G, x).passed
