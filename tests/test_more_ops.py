"""Ops of modern user models: RMSNorm, SwiGLU products, LayerNorm's mean shift, InstanceNorm,
padding/upsampling and dropout variants — each derived, proven, and with a negative control."""

from __future__ import annotations

import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl


def _kinds(G: sl.SymmetryGroup) -> list[str]:
    return [f.short() for f in G.factors]


class _SwiGLU(nn.Module):
    """A Llama-style block: RMSNorm, gated feed-forward, residual."""

    def __init__(self, e: int = 6, hidden: int = 10) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(e)
        self.w1 = nn.Linear(e, hidden, bias=False)
        self.w3 = nn.Linear(e, hidden, bias=False)
        self.w2 = nn.Linear(hidden, e, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class _Llama(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 6)
        self.blocks = nn.Sequential(_SwiGLU(), _SwiGLU())
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.embed(x)))


def test_rmsnorm_and_gated_units() -> None:
    torch.manual_seed(0)
    model = _Llama().double()
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    G = sl.symmetries(model, x)
    by_name = {f.name: f for f in G.factors}
    for b in ("blocks.0", "blocks.1"):
        perm = by_name[f"P[{b}.w1]"]  # w1 and w3 rows and w2 columns move together
        assert int(perm.size) == 10
        assert {k for k, _ in perm.axes} == {f"{b}.w1.weight", f"{b}.w3.weight", f"{b}.w2.weight"}
        scale = by_name[f"scale[{b}.w3]"]  # the linear branch scales, w2 compensates
        assert {k for k, _ in scale.axes} == {f"{b}.w3.weight", f"{b}.w2.weight"}
        assert f"scale[{b}.w1]" not in by_name  # silu's branch cannot be scaled
    stream = by_name["P[embed]"]
    assert int(stream.size) == 6 and ("blocks.1.norm.weight", 0) in stream.axes
    assert by_name["scale[embed]"].kind == "common_scaling"  # RMSNorm: one common scale
    assert sl.check_invariance(model, G, x).passed


def test_gated_product_negative_control() -> None:
    """Scaling the gate (silu) branch instead of the linear one changes the output."""
    torch.manual_seed(0)
    block = _SwiGLU().double()
    x = torch.randn(3, 6, dtype=torch.float64)
    sd = dict(block.state_dict())
    d = torch.rand(10, dtype=torch.float64) + 0.5
    sd["w1.weight"] = sd["w1.weight"] * d[:, None]
    sd["w2.weight"] = sd["w2.weight"] / d[None, :]
    wrong = _SwiGLU().double()
    wrong.load_state_dict(sd)
    assert not torch.allclose(wrong(x), block(x), atol=1e-6)


def test_layernorm_removes_the_mean_shift_of_the_linear_before_it() -> None:
    n = sp.Symbol("n")
    G = sl.symmetries(sl.graph.mlp([3, n, 2], norm="layernorm"))
    shifts = [f for f in G.factors if f.kind == "translation"]
    assert [f.name for f in shifts] == ["T[layers.0.linear#mean_shift]"]
    assert shifts[0].size == 4  # fan-in 3 + bias
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert "(R^4,+)" in _kinds(G)
    assert sl.check_invariance(model, G, x).passed

    # a linear map read by something else as well keeps its rows
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.ln = nn.Linear(3, 5), nn.LayerNorm(5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = self.a(x)
            return self.ln(z) + z

    assert not any(f.kind == "translation" for f in sl.symmetries(Two().double(), x).factors)


def test_rmsnorm_has_no_mean_shift() -> None:
    """RMSNorm does not centre: shifting its input changes the output (negative control)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.RMSNorm(5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert not any(f.kind == "translation" for f in G.factors)
    moved = nn.Sequential(nn.Linear(3, 5), nn.RMSNorm(5), nn.Tanh(), nn.Linear(5, 2)).double()
    sd = model.state_dict()
    sd["0.bias"] = sd["0.bias"] + 1.0
    moved.load_state_dict(sd)
    assert not torch.allclose(moved(x), model(x))


@pytest.mark.parametrize(
    "spatial",
    [
        nn.ZeroPad2d(1),
        nn.ReflectionPad2d(1),
        nn.Upsample(scale_factor=2),
        nn.Dropout2d(0.5),
        nn.Identity(),
    ],
)
def test_instancenorm_and_spatial_ops_keep_channel_symmetries(spatial: nn.Module) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.InstanceNorm2d(4, affine=True), nn.ReLU(), spatial,
        nn.Conv2d(4, 3, 3),
    ).double()  # fmt: skip
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert _kinds(G)[:2] == ["S_4", "R_{>0}^4"]
    assert sl.check_invariance(model, G, x).passed


def test_padding_features_is_fixed_not_guessed() -> None:
    """A pad module over the last axis of a (batch, tokens, features) tensor pads units: the
    padded tensor is read fixed, so the first layer's units do not move."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ZeroPad1d(1), nn.Linear(6, 2)).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    G = sl.symmetries(model, x)
    assert G.log10_order == 0 and G.dimension == 0
    assert sl.check_invariance(model, G, x).passed


def test_a_module_called_twice_on_the_same_input_is_one_op() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln = nn.LayerNorm(8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.attn(self.ln(x), self.ln(x), self.ln(x))[0]

    class Shared(nn.Module):  # real weight sharing: two different inputs
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.relu(self.fc(x)))

    torch.manual_seed(0)
    block = Block().double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    G = sl.symmetries(block, x)
    assert any(f.name == "P[attn#heads]" for f in G.factors)
    assert sl.check_invariance(block, G, x).passed
    shared = sl.symmetries(Shared(), torch.randn(2, 4))  # weight sharing: the calls are tied
    assert shared.factors == []  # tied to the fixed input and output (tests/test_patterns_misc)


def test_a_stateless_module_reused_is_one_op_per_call() -> None:
    """torchvision's BasicBlock applies one ``self.relu`` twice: not weight sharing."""

    class Basic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.b1, self.b2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.b1(self.c1(x)))
            out = self.b2(self.c2(out))
            out += x
            return self.relu(out)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), Basic(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).double().eval()  # fmt: skip
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    G = sl.symmetries(model, x)
    names = [n.name for n in G.graph.nodes()]
    assert "1.relu" in names and "1.relu@1" in names
    assert [f.short() for f in G.factors if f.kind == "permutation"] == ["S_4", "S_4"]
    assert sl.check_invariance(model, G, x).passed


def test_two_input_model_is_traced_and_checked() -> None:
    """Cross-attention from a second stream, with a key padding mask passed as an input."""

    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_in, self.kv_in = nn.Linear(3, 8), nn.Linear(5, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.out = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
            q, kv = self.q_in(x), self.kv_in(y)
            return self.out(self.attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0])

    torch.manual_seed(0)
    model = Cross().double()
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[:, -2:] = True
    inputs = (torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 6, 5, dtype=torch.float64),
              pad)  # fmt: skip
    G = sl.symmetries(model, inputs)
    assert any(f.name == "P[attn#heads]" for f in G.factors)
    assert sl.check_invariance(model, G, inputs).passed
    with pytest.raises(sl.errors.NonFiniteError):
        sl.check_invariance(model, G, (inputs[0] * float("nan"), inputs[1], pad))
    with pytest.raises(sl.errors.DataError, match="tuple of tensors"):
        sl.check_invariance(model, G, list(inputs))  # type: ignore[arg-type]


# -- ConvNeXt (channels-last LayerNorm, layer scale) and MobileNet (squeeze-excitation) --------
class CNXBlock(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        s.norm = nn.LayerNorm(c, eps=1e-12)
        s.pw1 = nn.Linear(c, 4 * c)
        s.act = nn.GELU()
        s.pw2 = nn.Linear(4 * c, c)
        s.gamma = nn.Parameter(torch.rand(c) + 0.5)

    def forward(s, x):
        inp = x
        x = s.dw(x)
        x = x.permute(0, 2, 3, 1)
        x = s.norm(x)
        x = s.pw2(s.act(s.pw1(x)))
        x = s.gamma * x
        x = x.permute(0, 3, 1, 2)
        return inp + x


class ConvNeXt(nn.Module):
    def __init__(s):
        super().__init__()
        s.stem = nn.Conv2d(3, 8, 2, stride=2)
        s.b = nn.Sequential(CNXBlock(8), CNXBlock(8))
        s.head = nn.Linear(8, 3)

    def forward(s, x):
        return s.head(s.b(s.stem(x)).mean((-2, -1)))


class SqueezeExcite(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.fc1 = nn.Conv2d(c, c // 2, 1)
        s.fc2 = nn.Conv2d(c // 2, c, 1)

    def forward(s, x):
        return x * torch.sigmoid(s.fc2(F.relu(s.fc1(F.adaptive_avg_pool2d(x, 1)))))


class MobileSE(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(3, 8, 3, padding=1)
        s.b1 = nn.BatchNorm2d(8)
        s.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        s.b2 = nn.BatchNorm2d(8)
        s.se = SqueezeExcite(8)
        s.pw = nn.Conv2d(8, 4, 1)
        s.head = nn.Linear(4, 2)

    def forward(s, x):
        x = F.relu6(s.b1(s.c1(x)))
        x = F.relu6(s.b2(s.dw(x)))
        x = s.se(x)
        x = s.pw(x)
        return s.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("arch", ["ConvNeXt", "MobileSE"])
def test_layer_scale_and_squeeze_excitation_keep_channel_spaces(arch: str) -> None:
    torch.manual_seed(0)
    model = {"ConvNeXt": ConvNeXt, "MobileSE": MobileSE}[arch]().double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    G = sl.symmetries(model, x)
    perms = sorted(int(f.size) for f in G.factors if f.kind == "permutation")
    # ConvNeXt: the 8-channel stream (through permutes, LayerNorm, gamma * x) and two MLPs;
    # MobileSE: the 8 expanded channels (through the gate x * sigmoid(...)) and the 4 outputs
    assert perms == ([8, 32, 32] if arch == "ConvNeXt" else [4, 8])
    assert sl.check_invariance(model, G, x).passed
