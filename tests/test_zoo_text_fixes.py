"""The front-end fixes behind the transformers text census, each on a hand-written miniature
with a negative control: rotary embeddings outside a recognised attention block (one opaque
node), a twin cast of the rotated tensor (``q.float() * cos + rotate_half(q.float()) * sin``),
an embedding table shared by two functional calls (tied), GELU written with ``erf``, an empty
slice (``q[..., d:]`` at ``d``), ``repeat_interleave`` on token axes, and the census's
tolerance for models that compute in float32 inside."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from patterns_util import force_export
from torch import nn

import symlab as sl
from symlab.frontend.axes import moved_feature_axis
from symlab.frontend.inputs import ExampleInputs
from symlab.frontend.patterns import registry
from symlab.testing.zoo_models import ZooCase
from symlab.testing.zoo_report import run_case


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, twin: bool) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin``; with ``twin``, on two casts of ``x`` (ModernBERT)."""
    h = x.shape[-1] // 2

    def turned(t: torch.Tensor) -> torch.Tensor:
        return torch.cat((-t[..., h:], t[..., :h]), dim=-1)

    if twin:
        return x.float() * cos + turned(x.float()) * sin
    return x * cos + turned(x) * sin


class QKNormRope(nn.Module):
    """Qwen3-style attention with a norm of the values too: an RMSNorm on each query, key and
    value head before the rotary embedding (the attention matcher reads a norm of the queries
    and keys, not of the values), then a SwiGLU MLP."""

    def __init__(self, d: int = 8, heads: int = 2, twin: bool = False) -> None:
        super().__init__()
        self.h, self.hd, self.twin = heads, d // heads, twin
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.qn, self.kn = nn.Parameter(torch.ones(self.hd)), nn.Parameter(torch.ones(self.hd))
        self.vn = nn.Parameter(torch.ones(self.hd))
        self.up, self.gate, self.down = nn.Linear(d, 16), nn.Linear(d, 16), nn.Linear(16, d)

    @staticmethod
    def norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-30) * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.norm(self.q(x).view(B, T, self.h, self.hd), self.qn).transpose(1, 2)
        k = self.norm(self.k(x).view(B, T, self.h, self.hd), self.kn).transpose(1, 2)
        v = self.norm(self.v(x).view(B, T, self.h, self.hd), self.vn).transpose(1, 2)
        inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2, dtype=x.dtype) / self.hd))
        freqs = torch.arange(T, dtype=x.dtype)[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        q, k = _rope(q, cos, sin, self.twin), _rope(k, cos, sin, self.twin)
        a = (q @ k.transpose(-2, -1) / math.sqrt(self.hd)).softmax(-1)
        x = x + self.o((a @ v).transpose(1, 2).reshape(B, T, -1))
        return x + self.down(F.silu(self.gate(x)) * self.up(x))


def _x(seed: int = 0, d: int = 8) -> torch.Tensor:
    return torch.randn(2, 5, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("twin", [False, True])
def test_rope_outside_attention_is_one_opaque_node(twin: bool) -> None:
    """The rotated queries and keys are fixed (their projections' rows never move); the MLP
    keeps its permutations; the group holds on the real forward."""
    net = QKNormRope(twin=twin).double()
    x = _x()
    G = sl.symmetries(net, x)
    assert [n for n in G.graph.nodes() if n.op == "opaque"]
    moved = {key for f in G.factors for key, _ in f.axes}
    assert not {"q.weight", "k.weight", "qn", "kn"} & moved
    assert any(f.kind == "permutation" and f.size == 16 for f in G.factors)
    assert sl.check_invariance(net, G, x, 4, tol=1e-5).worst < 1e-5  # float32 rotations


def test_rope_outside_attention_without_the_pattern_is_read_op_by_op_and_sound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the pattern the rotation's concatenation is read op by op (its halves fixed
    where they feed a norm): the same group, still proven on the forward."""
    net, x = QKNormRope().double(), _x()
    with_pattern = sl.symmetries(net, x)
    monkeypatch.delitem(registry._PATTERNS, "rope_fixed")
    G = sl.symmetries(net, x)
    assert sl.check_invariance(net, G, x, 6, tol=1e-5).worst < 1e-5
    assert G.log10_order <= with_pattern.log10_order + 1e-9


def test_twin_cast_rope_inside_attention_keeps_its_head_maps() -> None:
    """Llama-style attention whose rotation casts the queries twice is still one attention
    node with rotary pairs (complex scalings), proven on the forward."""

    class TwinRope(QKNormRope):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            B, T, _ = x.shape
            q = self.q(x).view(B, T, self.h, self.hd).transpose(1, 2)
            k = self.k(x).view(B, T, self.h, self.hd).transpose(1, 2)
            v = self.v(x).view(B, T, self.h, self.hd).transpose(1, 2)
            inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2, dtype=x.dtype) / self.hd))
            emb = torch.arange(T, dtype=x.dtype)[:, None] * inv[None, :]
            emb = torch.cat((emb, emb), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            q, k = _rope(q, cos, sin, True), _rope(k, cos, sin, True)
            a = (q @ k.transpose(-2, -1) / math.sqrt(self.hd)).softmax(-1)
            return self.o((a @ v).transpose(1, 2).reshape(B, T, -1))

    net, x = TwinRope().double(), _x()
    G = sl.symmetries(net, x)
    assert any(n.op.startswith("attention") for n in G.graph.nodes())
    assert "complex_scaling" in {f.kind for f in G.factors}
    assert sl.check_invariance(net, G, x, 4, tol=1e-5).worst < 1e-5  # float32 rotation


class SharedTable(nn.Module):
    """An encoder and a decoder reading one embedding table through F.embedding (BART's
    shared, scaled embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Embedding(10, 6)
        self.enc, self.dec = nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        w = self.shared.weight
        e = torch.tanh(self.enc(F.embedding(a, w) * 2.0))
        return self.dec(e + F.embedding(b, w))


def test_a_table_shared_by_two_embedding_calls_is_tied(monkeypatch: pytest.MonkeyPatch) -> None:
    force_export(monkeypatch)
    net = SharedTable().double()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 10, (2, 4), generator=g), torch.randint(0, 10, (2, 4), generator=g)
    G = sl.symmetries(net, (a, b))
    assert G.log10_order > 0
    assert sl.check_invariance(net, G, (a, b), 4).worst < 1e-9
    tied = [f for f in G.factors if ("shared.weight", 1) in f.axes and f.kind == "permutation"]
    assert tied and {("enc.weight", 1), ("dec.weight", 1)} <= set(tied[0].axes)
    # negative control: the same element without its move of the decoder's columns breaks
    sd = {k: v.detach() for k, v in net.state_dict().items()}
    moved = dict(G.act(G.element({tied[0].name: torch.tensor([1, 0, 3, 2, 5, 4])}), sd))
    moved["dec.weight"] = sd["dec.weight"]
    call = torch.func.functional_call
    assert not torch.allclose(call(net, moved, (a, b)), call(net, sd, (a, b)))


def test_erf_gelu_keeps_permutations_and_odd_erf_keeps_signs() -> None:
    class ErfGelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            h = h * 0.5 * (1.0 + torch.erf(h / math.sqrt(2.0)))
            return self.c(torch.erf(self.b(h)))

    net, x = ErfGelu().double(), torch.randn(7, 4, dtype=torch.float64)
    G = sl.symmetries(net, x)
    kinds = {(f.kind, int(f.size)) for f in G.factors}
    assert ("permutation", 6) in kinds and ("sign", 5) in kinds and ("sign", 6) not in kinds
    assert sl.check_invariance(net, G, x, 4).worst < 1e-9


def test_an_empty_slice_is_fixed_data() -> None:
    class Empty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            return self.b(torch.cat([h[..., :6], h[..., 6:]], dim=-1))

    net, x = Empty().double(), torch.randn(3, 4, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert sl.check_invariance(net, G, x, 4).worst < 1e-9


def test_repeat_interleave_moves_units_only_off_their_axis() -> None:
    assert moved_feature_axis(torch.repeat_interleave, (2, 1), 2, (2, 3, 8), (2, 6, 8)) == 2
    assert moved_feature_axis(torch.repeat_interleave, (2, -1), 2, (2, 3, 8), (2, 3, 16)) is None
    assert moved_feature_axis(torch.repeat_interleave, (1, 2), 2, (2, 3, 8), (2, 3, 8)) is None

    class Up(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)).repeat_interleave(2, dim=1))

    net, x = Up().double(), torch.randn(2, 3, 4, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert any(f.kind == "permutation" and f.size == 6 for f in G.factors)
    assert sl.check_invariance(net, G, x, 4).worst < 1e-9

    class ByShape(nn.Module):  # GCViT: repeats computed from a shape (a traced value)
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            g = h[:1].repeat_interleave(x.shape[0] // 1, dim=0)
            return self.b(h + g)

    net, x = ByShape().double(), torch.randn(3, 4, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert any(f.kind == "permutation" and f.size == 6 for f in G.factors)
    assert sl.check_invariance(net, G, x, 4).worst < 1e-9
    # along the units' own axis a repeat still moves them: refused, whatever the counts
    assert moved_feature_axis(torch.repeat_interleave, (None, 1), 1, (3, 6), (3, 12)) is None


class Float32Inside(nn.Module):
    """A float64 model with a float32 RMSNorm inside (Llama's cast)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.w, self.b = nn.Linear(16, 16), nn.Parameter(torch.ones(16)), nn.Linear(16, 3)
        self.c = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x).float()
        h = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True))).double() * self.w
        return self.c(torch.relu(self.b(h)))


def test_the_census_tolerates_float32_inside_but_not_a_wrong_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from symlab.symmetry import builtin_rules
    from symlab.symmetry.spec import Admits, Mag, Sign

    x = ExampleInputs((torch.randn(4, 16, generator=torch.Generator().manual_seed(0)),))
    case = ZooCase("toy", "f32", lambda: (Float32Inside(), x))
    assert run_case(case).outcome == "derived and sound"
    # negative control: ReLU wrongly claiming sign flips is unsound at the float32 tolerance too
    monkeypatch.setitem(builtin_rules.ACTIVATION_ADMITS, "relu", Admits(Mag.NONE, Sign.DIAG))
    assert run_case(case).outcome == "unsound"


class AcrossTokens(nn.Module):
    """SqueezeBERT-style layers across another axis than the units': a Conv1d over the token
    axis of a (B, T, C) tensor and a LayerNorm over the tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.conv, self.b = nn.Linear(4, 6), nn.Conv1d(5, 5, 1), nn.Linear(6, 2)
        self.norm = nn.Parameter(torch.ones(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))  # (B, T=5, C=6), units on the last axis
        h = h + self.conv(h)  # mixes the 5 tokens at each unit: units on axis 2, not 1
        h = torch.relu(h.transpose(1, 2))  # (B, 6, 5)
        h = F.layer_norm(h, (5,))  # normalises over the tokens of each unit
        return self.b(h.transpose(1, 2) * self.norm)


def test_a_layer_across_another_axis_is_opaque_and_sound() -> None:
    net, x = AcrossTokens().double(), torch.randn(2, 5, 4, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert sl.check_invariance(net, G, x, 4).worst < 1e-9
    assert not {key for f in G.factors for key, _ in f.axes} & {"conv.weight", "conv.bias"}


def test_a_shared_layer_across_another_axis_is_sound() -> None:
    """A layer across another axis called twice: its input is fixed at each call and its own
    channels are derived as a shared layer's, proven on the forward."""

    class Twice(AcrossTokens):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            return self.b(h + self.conv(h) + self.conv(h * 2.0))

    net, x = Twice().double(), torch.randn(2, 5, 4, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert sl.check_invariance(net, G, x, 6).worst < 1e-9


class ShiftedIds(nn.Module):
    """BART's shift_tokens_right: token ids written in place through views, then embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(10, 6), nn.Linear(6, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        shifted = ids.new_zeros(ids.shape)
        shifted[:, 1:] = ids[:, :-1].clone()
        shifted[:, 0] = 2
        return self.fc(torch.tanh(self.emb(shifted) + self.emb(ids)))


def test_in_place_writes_on_token_ids_through_views_are_fixed_data() -> None:
    net = ShiftedIds().double()
    ids = torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(net, ids)
    assert sl.check_invariance(net, G, ids, 4).worst < 1e-9

    class IntoUnits(ShiftedIds):  # the same write into a tensor with units
        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.emb(ids))
            g = h * 1.0
            g[:, 0] = 0.0  # the first token
            return self.fc(h + g)

    # not fixed data: torch.fx hands it to torch.export, which reads the write as the cat of
    # g's pieces (symlab.frontend.scattered), proven on the forward
    into = IntoUnits().double()
    G = sl.symmetries(into, ids)
    assert G.graph.frontend == "torch.export"
    assert sl.check_invariance(into, G, ids, 4).worst < 1e-9
    # the zeros written over the first token move with the units (the read of the region
    # times 0): the group of the model without the write
    assert [f.short() for f in G.factors] == ["S_6", "{±1}^6"]
