"""Attention written by hand: head permutations and per-head GL derived, proven, and refused
for every near miss (symlab.frontend.patterns.attention)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl
from symlab.nn.zoo.transformer import HandAttention, HandTransformer

E, H = 12, 3


def _prep(model, x):
    return model.double().eval(), x.double()


def _group(model, x):
    G = sl.symmetries(model, x)
    rep = sl.check_invariance(model, G, x, samples=6)
    assert rep.passed, rep
    return G


def _heads(G):
    return {f.name: f for f in G.factors if f.internal}


class Attn(nn.Module):
    """One configurable hand-written attention block, followed by a ReLU MLP head."""

    def __init__(self, split="view", scale="mul", merge="reshape", sdpa=False, bias=True,
                 dropout=False, cross=False, dq=4, dv=4, near_miss=None):  # fmt: skip
        super().__init__()
        self.split, self.scale_kind, self.merge, self.sdpa = split, scale, merge, sdpa
        self.cross, self.near_miss, self.dq, self.dv = cross, near_miss, dq, dv
        self.mem = nn.Linear(E, E) if cross else None
        self.q = nn.Linear(E, H * dq, bias=bias)
        self.k = nn.Linear(E, H * dq, bias=bias)
        self.v = nn.Linear(E, H * dv, bias=bias)
        self.o = nn.Linear(H * dv, E, bias=bias)
        self.drop = nn.Dropout(0.1) if dropout else nn.Identity()
        self.head = nn.Linear(E, 2)

    def heads(self, y, d):
        b, t, _ = y.shape
        if self.split == "view":
            y = y.view(b, t, H, d)
        elif self.split == "reshape":
            y = y.reshape(b, t, H, -1)
        else:
            y = y.unflatten(-1, (H, d))
        return y.transpose(1, 2) if self.split != "reshape" else y.permute(0, 2, 1, 3)

    def forward(self, x):
        b, t, _ = x.shape
        kv_in = F.relu(self.mem(x)) if self.cross else x
        q = self.heads(self.q(x), self.dq)
        k = self.heads(self.k(kv_in), self.dq)
        v = self.heads(self.v(kv_in), self.dv)
        if self.near_miss == "roll_k_heads":  # pairs query head h with key head h + 1
            k = torch.cat([k[:, 1:], k[:, :1]], dim=1)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.scale_kind == "causal")
        else:
            s = q @ k.transpose(-2, -1)
            if self.scale_kind == "mul":
                s = s * (1.0 / math.sqrt(self.dq))
            elif self.scale_kind == "div":
                s = s / math.sqrt(q.size(-1))
            dim = 1 if self.near_miss == "softmax_heads" else -1
            a = self.drop(torch.softmax(s, dim=dim))
            y = torch.matmul(a, v)
        if self.near_miss == "head_minor_merge":  # units ordered (d, h): not head-major
            y = y.permute(0, 2, 3, 1).reshape(b, t, H * self.dv)
        elif self.merge == "reshape":
            y = y.transpose(1, 2).reshape(b, t, H * self.dv)
        elif self.merge == "flatten":
            y = y.transpose(1, 2).flatten(2)
        else:
            y = y.transpose(1, 2).contiguous().view(b, t, -1)
        out = self.o(y)
        if self.near_miss == "weights_leak":  # the raw scores reach the output
            out = out + s.mean(dim=(1, 3)).unsqueeze(-1)
        return self.head(F.relu(out))


VARIANTS = [
    {},
    {"split": "unflatten", "scale": "div", "merge": "flatten"},
    {"split": "reshape", "scale": "none", "merge": "view", "bias": False},
    {"sdpa": True},
    {"sdpa": True, "scale": "causal", "split": "unflatten", "merge": "flatten"},
    {"dropout": True, "bias": False},
    {"cross": True, "dq": 2, "dv": 5},
]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_variants_get_heads_and_per_head_gl(kw):
    model, x = _prep(Attn(**kw), torch.randn(3, 5, E))
    G = _group(model, x)
    dq, dv = kw.get("dq", 4), kw.get("dv", 4)
    f = _heads(G)
    assert f["P[o#heads]"].order == math.factorial(H)
    assert f["GL[o#qk]"].dimension == H * dq * dq and f["GL[o#vo]"].dimension == H * dv * dv
    node = G.graph.node("o")
    assert node.op == "attention_linear" and node.attrs["modules"] == ("q", "k", "v", "o")
    assert node.attrs["qkv"] == ((0, 1, 1) if kw.get("cross") else (0, 0, 0))


@pytest.mark.parametrize("miss", ["softmax_heads", "roll_k_heads", "head_minor_merge",
                                  "weights_leak"])  # fmt: skip
def test_near_misses_stay_opaque_and_sound(miss):
    model, x = _prep(Attn(near_miss=miss), torch.randn(3, 5, E))
    G = _group(model, x)
    assert not _heads(G)
    assert all(n.op != "attention_linear" for n in G.graph.nodes())
    # q, k, v stay fixed: nothing is derived through the ops symlab could not prove
    moved = {k for f in G.factors for k, _ in f.axes}
    assert not moved & {"q.weight", "k.weight", "v.weight"}


def test_shared_projection_is_refused_not_matched():
    class Shared(Attn):
        def forward(self, x):
            q = self.heads(self.q(x), 4)
            k = self.heads(self.q(x), 4)  # the query projection used for the keys too
            v = self.heads(self.v(x), 4)
            y = torch.softmax(q @ k.transpose(-2, -1), -1) @ v
            return self.o(y.transpose(1, 2).flatten(2))

    # the second identical call of self.q is the same tensor (not weight sharing); the
    # matcher refuses a projection shared by queries and keys, so nothing passes through it
    model, x = _prep(Shared(), torch.randn(2, 5, E))
    G = sl.symmetries(model, x)
    assert not _heads(G)
    assert not {k for f in G.factors for k, _ in f.axes} & {"q.weight", "v.weight"}
    assert G.graph.unused_keys == ("k.weight", "k.bias", "head.weight", "head.bias")
    assert sl.check_invariance(model, G, x).passed  # unused parameters pass through act


def test_same_projection_for_keys_and_values_stays_opaque():
    class KeyIsValue(Attn):
        def __init__(self):
            super().__init__()
            del self.v

        def forward(self, x):
            q = self.heads(self.q(x), 4)
            k = self.heads(self.k(x), 4)
            y = torch.softmax(q @ k.transpose(-2, -1), -1) @ k  # W_K serves as W_V
            return self.head(self.o(y.transpose(1, 2).flatten(2)))

    model, x = _prep(KeyIsValue(), torch.randn(2, 5, E))
    assert not _heads(_group(model, x))


def test_zoo_hand_attention():
    model, x = _prep(HandAttention(E, H), torch.randn(2, 6, E))
    G = _group(model, x)
    f = _heads(G)
    d = E // H
    assert f["P[o#heads]"].order == math.factorial(H)
    # inputs and outputs of the network are fixed: only the internal factors remain, and the
    # key bias (free: the softmax over keys ignores q·b_K)
    assert G.order == math.factorial(H) and G.dimension == 2 * H * d * d + H * d


def test_zoo_hand_transformer_every_block():
    net = HandTransformer(vocab_size=11, seq_len=5, d_model=E, num_heads=H, num_layers=2)
    for m in net.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-12  # LayerNorm's scale invariance is exact only up to eps
    model = net.double().eval()
    tokens = torch.randint(0, 11, (3, 5))
    G = sl.symmetries(model, tokens)
    assert sl.check_invariance(model, G, tokens, samples=6, tol=1e-8).passed
    f = _heads(G)
    d = E // H
    for i in range(2):
        assert f[f"P[blocks.{i}.attn#heads]"].order == math.factorial(H)
        assert f[f"GL[blocks.{i}.attn#qk]"].dimension == H * d * d
    assert G.order % math.factorial(H) ** 2 == 0
    assert G.dimension >= 2 * 2 * H * d * d
    # one residual stream: it is written by every W_O and read (through LayerNorm) by W_Q
    stream = G.permutation_spec()["P[@pos_embed]"]
    assert ("blocks.0.attn.o.weight", 0) in stream and ("blocks.1.attn.q.weight", 1) in stream


def test_breaking_the_qk_pairing_changes_outputs():
    model, x = _prep(Attn(), torch.randn(3, 5, E))
    G = sl.symmetries(model, x)
    sd = dict(model.state_dict())
    h = G.sample(0)
    moved = G.act(h, sd)
    qk = h["GL[o#qk]"]
    # the derived element keeps outputs; applying its W_Q part alone (no W_K^{-T}) does not
    broken = dict(sd)
    for key in ("q.weight", "q.bias"):
        broken[key] = moved[key]
    base = model(x)
    assert (torch.func.functional_call(model, moved, (x,)) - base).abs().max() < 1e-9
    assert (torch.func.functional_call(model, broken, (x,)) - base).abs().max() > 1e-3
    # the simplest break: one head of W_Q scaled alone
    w = sd["q.weight"].clone()
    w[:4] *= 2.0
    out = torch.func.functional_call(model, dict(sd, **{"q.weight": w}), (x,))
    assert (out - base).abs().max() > 1e-3
    assert qk.shape == (H, 4, 4)


def test_output_projection_read_as_the_next_query_is_sound():
    class Chained(nn.Module):
        def __init__(self):
            super().__init__()
            self.q1, self.k1, self.v1, self.o1 = (nn.Linear(E, E) for _ in range(4))
            self.k2, self.v2, self.o2 = (nn.Linear(E, E) for _ in range(3))

        def attend(self, q, k, v, o):
            q, k, v = (y.unflatten(-1, (H, E // H)).transpose(1, 2) for y in (q, k, v))
            y = torch.softmax(q @ k.transpose(-2, -1), -1) @ v
            return o(y.transpose(1, 2).flatten(2))

        def forward(self, x):
            y = self.attend(self.q1(x), self.k1(x), self.v1(x), self.o1)
            return self.attend(y, self.k2(x), self.v2(x), self.o2)  # o1 serves as b's W_Q

    model, x = _prep(Chained(), torch.randn(2, 5, E))
    G = _group(model, x)
    assert set(_heads(G)) == {"P[o1#heads]", "GL[o1#qk]", "GL[o1#vo]"}
