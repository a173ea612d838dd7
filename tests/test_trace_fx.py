"""The torch.fx front-end: CNNs, residual blocks, attention, functions, and refusals."""

import math

import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl

torch.manual_seed(0)


def _prep(model, x, bn_warmup=False):
    model = model.double()
    x = x.double()
    if bn_warmup:
        model.train()
        with torch.no_grad():
            model(x)
    return model.eval(), x


def _sound(model, x, **kw):
    G = sl.symmetries(model, x)
    rep = sl.check_invariance(model, G, x, **kw)
    assert rep.passed, rep
    return G


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 2 * 2, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = torch.tanh(self.conv2(x))
        x = x.view(x.size(0), -1)
        return self.out(F.gelu(self.fc(x)))


def test_cnn_channels_flatten_to_blocks():
    model, x = _prep(SmallCNN(), torch.randn(8, 1, 8, 8), bn_warmup=True)
    G = _sound(model, x)
    kinds = {f.name: f.kind for f in G.factors}
    assert kinds["P[conv2]"] == "permutation" and kinds["sign[conv2]"] == "sign"
    # conv2's 6 channels reach fc through a flatten of 2×2 positions: fc's columns move in blocks
    assert ("fc.weight", 1) in G.permutation_spec()["P[conv2]"]
    assert G.order == math.factorial(4) * 2**4 * math.factorial(6) * 2**6 * math.factorial(5)


class ResBlock(nn.Module):
    def __init__(self, c=6):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.conv_a = nn.Conv2d(c, c, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(c)
        self.conv_b = nn.Conv2d(c, c, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.head = nn.Linear(c, 2)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = self.bn_b(self.conv_b(F.relu(self.bn_a(self.conv_a(x)))))
        x = F.relu(x + y)
        x = self.dw(x)
        return self.head(x.mean(dim=(2, 3)))


def test_residual_ties_the_stream_and_depthwise_keeps_channels():
    model, x = _prep(ResBlock(), torch.randn(6, 3, 6, 6), bn_warmup=True)
    G = _sound(model, x)
    spec = G.permutation_spec()
    stream = spec["P[stem]"]
    for axis in [("stem.weight", 0), ("conv_a.weight", 1), ("bn_b.weight", 0),
                 ("dw.weight", 0), ("head.weight", 1)]:  # fmt: skip
        assert axis in stream
    assert "P[conv_a]" in spec  # the inner channels of the block are their own space


class Encoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        self.embed = nn.Linear(5, 8)
        # a tiny eps: LayerNorm's scale invariance is exact only up to eps
        layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True,
                                           norm_first=norm_first, layer_norm_eps=1e-12)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_heads_and_stream(norm_first):
    model, x = _prep(Encoder(norm_first), torch.randn(3, 4, 5))
    G = _sound(model, x)
    names = {f.name: f for f in G.factors}
    for i in range(2):
        node = f"encoder.layers.{i}.self_attn"
        assert names[f"P[{node}#heads]"].order == 2
        assert names[f"GL[{node}#qk]"].dimension == 2 * 4 * 4
        assert names[f"GL[{node}#vo]"].dimension == 2 * 4 * 4
    # one residual stream: the embedding rows and every layer's norm move together
    stream = G.permutation_spec()["P[embed]"]
    assert ("encoder.layers.1.norm2.weight", 0) in stream
    assert ("encoder.layers.0.self_attn.in_proj_weight", 1) in stream


def test_breaking_the_qk_pairing_changes_outputs():
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
    model, x = _prep(layer, torch.randn(3, 4, 8))
    sd = dict(model.state_dict())
    w = sd["self_attn.in_proj_weight"].clone()
    w[:4] = 2.0 * w[:4]  # scale head 0 of W_Q without the inverse on W_K
    sd["self_attn.in_proj_weight"] = w
    out = torch.func.functional_call(model, sd, (x,))
    assert (out - model(x)).abs().max() > 1e-3


class HandAttention(nn.Module):
    def __init__(self, e=8, h=2):
        super().__init__()
        self.h = h
        self.q, self.k, self.v, self.o = (nn.Linear(e, e) for _ in range(4))
        self.mlp = nn.Linear(e, 3)

    def forward(self, x):
        b, t, e = x.shape
        q = self.q(x).view(b, t, self.h, -1).transpose(1, 2)
        k = self.k(x).view(b, t, self.h, -1).transpose(1, 2)
        v = self.v(x).view(b, t, self.h, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(e // self.h), dim=-1)
        y = (a @ v).transpose(1, 2).reshape(b, t, e)
        return self.mlp(F.relu(self.o(y)))


def test_hand_written_attention_is_traced_soundly():
    model, x = _prep(HandAttention(), torch.randn(2, 5, 8))
    G = _sound(model, x)
    # the block is recognised (tests/test_trace_attention.py has the variants)
    assert set(G.permutation_spec()) == {"P[o]", "P[o#heads]"}


def test_functions_and_modules_give_the_same_group():
    seq = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))

    class Fn(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    x = torch.randn(4, 3)
    assert sl.symmetries(seq, x).order == sl.symmetries(Fn(), x).order == sp.factorial(5) * 2**5
    assert sl.trace(seq, x) == sl.trace(seq)
    assert sl.trace(seq, x).frontend == "torch.fx" and sl.trace(seq).frontend == "nn.Sequential"


class PosEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(10, 6)
        self.pos = nn.Parameter(torch.randn(1, 4, 6))
        self.norm = nn.LayerNorm(6, eps=1e-12)
        self.head = nn.Linear(6, 2)

    def forward(self, idx):
        return self.head(F.relu(self.norm(self.tok(idx) + self.pos)).mean(1))


def test_embeddings_and_parameters_used_as_tensors_move_with_the_stream():
    model = PosEmbed().double().eval()
    idx = torch.randint(0, 10, (5, 4))
    G = sl.symmetries(model, idx)
    (spec,) = G.permutation_spec().values()
    assert ("pos", 2) in spec and ("tok.weight", 1) in spec
    assert sl.check_invariance(model, G, idx).passed


def test_groupnorm_keeps_channels_in_their_groups():
    model = nn.Sequential(nn.Conv2d(2, 6, 3), nn.GroupNorm(3, 6, eps=1e-12), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))  # fmt: skip
    model, x = _prep(model, torch.randn(4, 2, 5, 5))
    G = _sound(model, x)
    perm = next(f for f in G.factors if f.kind == "permutation")
    assert perm.blocks == ((0, 1), (2, 3), (4, 5))


def test_unknown_function_names_node_and_source_line():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.asinh(self.a(x)))

    with pytest.raises(sl.errors.UnsupportedOpError, match=r"asinh.*test_trace_fx.py.*rule"):
        sl.symmetries(Odd(), torch.randn(2, 3))


def test_weight_sharing_ties_the_calls():
    """One Linear read on the input and on its own output: both calls' spaces are tied to the
    fixed input and output, so nothing moves (more in tests/test_patterns_misc.py)."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            return self.a(torch.relu(self.a(x)))

    G = sl.symmetries(Shared(), torch.randn(2, 3))
    assert G.factors == [] and [n.name for n in G.graph.nodes()][1:4] == ["a", "@relu", "a@1"]
