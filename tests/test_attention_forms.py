"""Attention written the common ways: nanoGPT's fused ``c_attn`` + split (flash and causal
masked_fill paths), timm's fused ``qkv`` reshape/permute/unbind, einsum scores and values,
added and ``attn_mask`` masks. Each gets the head symmetries, proven on the model; every near
miss (a mask read from the queries, a per-head mask, a leaked part of the fused rows, a wrong
head layout) stays opaque; and a wrong action is caught
(symlab.frontend.patterns.attention_forms)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import symlab as sl
from symlab.symmetry.rules import get_rule

E, H = 12, 3
D = E // H


class Nano(nn.Module):
    """nanoGPT's CausalSelfAttention (flash path, or the manual path with its tril buffer),
    with a few variations (``mask``) for the tests below."""

    def __init__(self, e=E, h=H, flash=False, bias=True, mask="causal", dv=None, layout="ok",
                 cut="split"):  # fmt: skip
        super().__init__()
        self.h, self.e, self.flash, self.mask, self.layout = h, e, flash, mask, layout
        self.cut = cut
        self.dv = dv or e // h
        extra = e if mask == "gate" else 0  # a 4th part of the fused rows, read elsewhere
        self.c_attn = nn.Linear(e, 2 * e + h * self.dv + extra, bias=bias)
        self.c_proj = nn.Linear(h * self.dv, e, bias=bias)
        self.attn_dropout = nn.Dropout(0.0)
        if mask == "causal" and not flash:
            tril = torch.tril(torch.ones(8, 8)).view(1, 1, 8, 8)
            self.register_buffer("bias", tril)
        if mask in ("add", "sdpa"):
            self.register_buffer("amask", torch.triu(torch.full((8, 8), -1e4), 1))
        if mask == "per_head":  # ALiBi-like: a different bias per head, not for transformers
            self.register_buffer("alibi", torch.randn(1, h, 8, 8), persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        sizes = [self.e, self.e, self.h * self.dv] + ([self.e] if self.mask == "gate" else [])
        if self.cut == "chunk":
            parts = self.c_attn(x).chunk(3, dim=-1)
        elif self.cut == "torch.split":
            parts = torch.split(self.c_attn(x), sizes, dim=-1)
        else:
            parts = self.c_attn(x).split(sizes, dim=2)
        q, k, v = parts[0], parts[1], parts[2]
        if self.layout == "d_major":  # key rows ordered (d, h): not head-major
            k = k.view(B, T, C // self.h, self.h).permute(0, 3, 1, 2)
        else:
            k = k.view(B, T, self.h, C // self.h).transpose(1, 2)
        q = q.view(B, T, self.h, C // self.h).transpose(1, 2)
        v = v.view(B, T, self.h, self.dv).transpose(1, 2)
        if self.flash:
            mask = self.amask[:T, :T] if self.mask == "sdpa" else None
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=self.mask == "causal"
            )
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            if self.mask == "causal":
                att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            elif self.mask == "add":
                att = att + self.amask[:T, :T]
            elif self.mask == "per_head":
                att = att + self.alibi[:, :, :T, :T]
            elif self.mask == "from_q":  # the mask depends on the queries
                att = att.masked_fill(q.sum(-1, keepdim=True) > 0, 0)
            att = self.attn_dropout(F.softmax(att, dim=-1))
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, self.h * self.dv)
        y = self.c_proj(y)
        return y * torch.sigmoid(parts[3]) if self.mask == "gate" else y


class Timm(nn.Module):
    """timm's Attention: fused qkv, reshape (B, N, 3, H, D), permute, unbind (or index)."""

    def __init__(self, dim=E, num_heads=H, qkv_bias=True, index=False, layout="ok"):
        super().__init__()
        self.num_heads, self.head_dim, self.index, self.layout = (
            num_heads,
            dim // num_heads,
            index,
            layout,
        )
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        if self.layout == "d_major":  # rows of each block ordered (d, h)
            qkv = self.qkv(x).reshape(B, N, 3, self.head_dim, self.num_heads)
            qkv = qkv.permute(2, 0, 4, 1, 3)
        else:
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
            qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = (qkv[0], qkv[1], qkv[2]) if self.index else qkv.unbind(0)
        attn = q @ k.transpose(-2, -1) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Einsum(nn.Module):
    """Separate projections, scores and values by einsum (two equation styles)."""

    def __init__(self, style="bhid"):
        super().__init__()
        self.style = style
        self.q, self.k, self.v, self.o = (nn.Linear(E, E) for _ in range(4))

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, H, D) for f in (self.q, self.k, self.v))
        if self.style == "bhid":
            q, k, v = (y.transpose(1, 2) for y in (q, k, v))
            a = torch.einsum("bhid,bhjd->bhij", q, k).softmax(-1)
            y = torch.einsum("bhij,bhjd->bhid", a, v).transpose(1, 2)
        elif self.style == "bqhd":
            a = torch.einsum("bqhd,bkhd->bhqk", q, k).softmax(-1)
            y = torch.einsum("bhqk,bkhd->bqhd", a, v)
        else:  # "bhdj": the queries' head dimension meets the keys' tokens (needs t == D)
            q, k, v = (y.transpose(1, 2) for y in (q, k, v))
            a = torch.einsum("bhid,bhdj->bhij", q, k).softmax(-1)
            y = torch.einsum("bhij,bhjd->bhid", a, v).transpose(1, 2)
        return self.o(y.reshape(b, t, E))


class KVFused(nn.Module):
    """Separate queries, keys and values from one fused Linear cut by chunk (2 Linears)."""

    def __init__(self):
        super().__init__()
        self.q, self.kv, self.o = nn.Linear(E, E), nn.Linear(E, 2 * E), nn.Linear(E, E)

    def forward(self, x):
        k, v = self.kv(x).chunk(2, dim=-1)
        q, k, v = (y.unflatten(-1, (H, D)).transpose(1, 2) for y in (self.q(x), k, v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """A pre-LN transformer block around ``attn``, with residual adds."""

    def __init__(self, attn):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(E), attn, nn.LayerNorm(E)
        self.fc, self.proj = nn.Linear(E, 4 * E), nn.Linear(4 * E, E)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


def _model(attn):
    model = Block(attn)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-12  # LayerNorm's scale invariance is exact only up to eps
    return model.double().eval()


def _x(t=5, seed=0):
    return torch.randn(2, t, E, generator=torch.Generator().manual_seed(seed)).double()


def _group(model, x):
    G = sl.symmetries(model, x)
    rep = sl.check_invariance(model, G, x, samples=6, tol=1e-8)
    assert rep.passed, rep
    return G


def _heads(G):
    return {f.name: f for f in G.factors if f.internal}


def _assert_heads(G, h=H, dq=D, dv=D, node="attn"):
    f = _heads(G)
    assert f[f"P[{node}#heads]"].order == math.factorial(h)
    assert f[f"GL[{node}#qk]"].dimension == h * dq * dq
    assert f[f"GL[{node}#vo]"].dimension == h * dv * dv


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("flash", [True, False], ids=["flash", "manual"])
def test_nanogpt_causal_self_attention(flash, bias):
    model = _model(Nano(flash=flash, bias=bias))
    G = _group(model, _x())
    _assert_heads(G)
    node = G.graph.node("attn")
    assert node.op == "attention_fused"
    assert node.attrs["modules"] == ("attn.c_attn", "attn.c_proj")
    assert node.attrs["roles"] == ((0, 0, E), (0, E, E), (0, 2 * E, E))  # rows [Q; K; V]
    fixed = [p.name for p in node.params if p.kind == "fixed"]
    assert fixed == ([] if flash else ["attn.bias"])  # the causal buffer: declared, never moved


@pytest.mark.parametrize("mask", ["add", "sdpa"])
def test_added_and_attn_mask_buffers(mask):
    model = _model(Nano(flash=mask == "sdpa", mask=mask))
    G = _group(model, _x())
    _assert_heads(G)
    assert [p.name for p in G.graph.node("attn").params if p.kind == "fixed"] == ["attn.amask"]


def test_unequal_value_head_dimension_from_one_fused_linear():
    model = _model(Nano(dv=2))  # split([E, E, H * 2]): values with 2 units per head
    G = _group(model, _x())
    _assert_heads(G, dv=2)
    assert G.graph.node("attn").attrs["roles"] == ((0, 0, E), (0, E, E), (0, 2 * E, H * 2))


@pytest.mark.parametrize("index", [False, True], ids=["unbind", "getitem"])
def test_timm_attention(index):
    model = _model(Timm(index=index))
    G = _group(model, _x())
    _assert_heads(G)
    node = G.graph.node("attn")
    assert node.op == "attention_fused" and node.attrs["modules"] == ("attn.qkv", "attn.proj")


@pytest.mark.parametrize("style", ["bhid", "bqhd"])
def test_einsum_attention(style):
    model = _model(Einsum(style))
    G = _group(model, _x())
    _assert_heads(G)
    assert G.graph.node("attn").op == "attention_linear"


def test_keys_and_values_fused_queries_separate():
    model = _model(KVFused())
    G = _group(model, _x())
    _assert_heads(G)
    node = G.graph.node("attn")
    assert node.attrs["modules"] == ("attn.q", "attn.kv", "attn.o")
    assert node.attrs["roles"] == ((0, 0, E), (1, 0, E), (1, E, E))


def test_padding_mask_given_as_a_network_input():
    class Padded(nn.Module):  # timm-style, with a key padding mask as a second input
        def __init__(self):
            super().__init__()
            self.qkv, self.o = nn.Linear(E, 3 * E), nn.Linear(E, E)

        def forward(self, x, keep):
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
            return self.o(y.transpose(1, 2).reshape(B, N, C))

    model = Padded().double().eval()
    x, keep = _x(), torch.ones(2, 5, dtype=torch.bool)
    keep[0, -2:] = False
    G = sl.symmetries(model, (x, keep))
    _assert_heads(G, node="o")
    sd = model.state_dict()
    base = model(x, keep)
    for seed in range(3):  # check_invariance takes one input tensor: act by hand
        out = torch.func.functional_call(model, G.act(G.sample(seed), sd), (x, keep))
        assert (out - base).abs().max() < 1e-9 * base.abs().max()


class XLMStyle(nn.Module):
    """XLM's and FlauBERT's attention: a key padding mask made from a second input, expanded
    to the scores with ``expand_as(scores)`` (which reads the scores for their shape only),
    written in place with ``masked_fill_`` (or out of place), a softmax in float32 cast back."""

    def __init__(self, in_place: bool, fill: str):
        super().__init__()
        self.in_place, self.fill = in_place, fill
        self.q, self.k, self.v, self.o = (nn.Linear(E, E) for _ in range(4))

    def forward(self, x, keep):
        B, N, _ = x.shape
        q = self.q(x).view(B, N, H, D).transpose(1, 2) / math.sqrt(D)
        k = self.k(x).view(B, N, H, D).transpose(1, 2)
        v = self.v(x).view(B, N, H, D).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3))
        mask = (keep == 0).view(B, 1, 1, N).expand_as(scores)
        fill = torch.finfo(scores.dtype).min if self.fill == "finfo" else -1e9
        if self.in_place:
            scores.masked_fill_(mask, fill)
        else:
            scores = scores.masked_fill(mask, fill)
        w = F.softmax(scores.float(), dim=-1).type_as(scores)
        return self.o(torch.matmul(w, v).transpose(1, 2).contiguous().view(B, N, E))


@pytest.mark.parametrize(
    ("in_place", "fill"),
    [(True, "finfo"), (False, "finfo"), (True, "constant"), (False, "constant")],
    ids=["masked_fill_-export", "masked_fill-export", "masked_fill_-fx", "masked_fill-fx"],
)
def test_xlm_style_expanded_padding_mask(in_place, fill):
    model = XLMStyle(in_place, fill).double().eval()
    x, keep = _x(), torch.ones(2, 5)
    keep[0, -2:] = 0
    G = sl.symmetries(model, (x, keep))
    assert G.graph.frontend == ("torch.export" if fill == "finfo" else "torch.fx")
    _assert_heads(G, node="o")
    # a finite fill does not move with the other scores of its row: no key-bias shift
    assert "T[o#key_bias]" not in {f.name for f in G.factors}
    sd, base = model.state_dict(), model(x, keep)
    for seed in range(4):  # check_invariance takes one input tensor: act by hand
        out = torch.func.functional_call(model, G.act(G.sample(seed), sd), (x, keep))
        assert (out - base).abs().max() < 1e-9 * base.abs().max()


def test_a_mask_expanded_from_the_scores_values_is_not_fixed():
    """Near miss: ``expand_as`` reads only the shape of its argument, but a mask taken from the
    scores' values (not a padding mask) is not fixed: the block stays opaque, and sound."""

    class FromScores(XLMStyle):
        def forward(self, x, keep):
            B, N, _ = x.shape
            q = self.q(x).view(B, N, H, D).transpose(1, 2)
            k = self.k(x).view(B, N, H, D).transpose(1, 2)
            v = self.v(x).view(B, N, H, D).transpose(1, 2)
            scores = torch.matmul(q, k.transpose(2, 3))
            mask = (scores > 0).expand_as(scores)
            w = F.softmax(scores.masked_fill(mask, -1e9), dim=-1)
            return self.o(torch.matmul(w, v).transpose(1, 2).contiguous().view(B, N, E))

    model = FromScores(False, "constant").double().eval()
    x, keep = _x(), torch.ones(2, 5)
    G = sl.symmetries(model, (x, keep))
    assert not _heads(G)
    sd, base = model.state_dict(), model(x, keep)
    for seed in range(3):
        out = torch.func.functional_call(model, G.act(G.sample(seed), sd), (x, keep))
        assert (out - base).abs().max() < 1e-9 * base.abs().max()


def test_two_blocks_each_with_its_causal_buffer():
    model = nn.Sequential(Block(Nano()), Block(Nano()))
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = 1e-12
    model = model.double().eval()
    G = _group(model, _x())
    for i in range(2):
        _assert_heads(G, node=f"{i}.attn")


NEAR_MISSES = {
    "mask_from_q": lambda: Nano(mask="from_q"),
    "fused_part_read_elsewhere": lambda: Nano(mask="gate"),
    "nano_d_major_keys": lambda: Nano(layout="d_major", mask="none"),
    "timm_d_major": lambda: Timm(layout="d_major"),
    "einsum_head_dim_with_tokens": lambda: Einsum("bhdj"),
}


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_near_misses_stay_opaque_and_sound(name):
    model = _model(NEAR_MISSES[name]())
    G = _group(model, _x(t=4))
    assert not _heads(G)
    assert all(not n.op.startswith("attention") for n in G.graph.nodes())
    moved = {k for f in G.factors for k, _ in f.axes}
    assert not moved & {"attn.c_attn.weight", "attn.qkv.weight", "attn.q.weight"}


def test_a_per_head_bias_keeps_gl_but_not_head_permutations():
    """A fixed bias per head (ALiBi-like) tells heads apart: the block is matched, its per-head
    GL kept, its heads never permuted (more in tests/test_patterns_misc.py)."""
    model = _model(Nano(mask="per_head"))
    G = _group(model, _x(t=4))
    assert [f.kind for f in G.factors if f.internal] == ["GL", "GL"]
    assert sl.check_invariance(model, G, _x(t=4)).passed


def test_a_mask_buffer_read_elsewhere_too_is_not_trusted():
    class Leaky(Nano):
        def forward(self, x):
            return super().forward(x) + self.bias[0, 0, : x.shape[1], :1]  # the buffer, again

    graph = sl.trace(_model(Leaky()), _x())
    assert all(not n.op.startswith("attention") for n in graph.nodes())
    assert all(n.op != "attention_fused" for n in sl.trace(_model(Nano()), _x()).nodes()) is False


def _d_major_heads(w, perm, blocks):
    """Permute heads as if each block's rows were ordered (d, h): the wrong layout."""
    return w.reshape(blocks, D, H, *w.shape[1:])[:, :, perm].reshape(w.shape)


def test_a_wrong_row_layout_is_caught_by_check_invariance(monkeypatch):
    model = _model(Nano())
    x = _x()
    G = sl.symmetries(model, x)
    rule = get_rule(G.graph.node("attn"))
    right = rule.act

    def wrong(node, params, t_in, t_out, internal):
        out = right(node, params, t_in, t_out, {k: v for k, v in internal.items() if k != "heads"})
        perm = internal["heads"]
        for key in ("attn.c_attn.weight", "attn.c_attn.bias"):
            out[key] = _d_major_heads(out[key], perm, 3)
        out["attn.c_proj.weight"] = _d_major_heads(out["attn.c_proj.weight"].T, perm, 1).T
        return out

    monkeypatch.setattr(rule, "act", wrong)
    with pytest.raises(sl.errors.InvarianceError, match="changed the outputs"):
        sl.check_invariance(model, G, x, samples=6, tol=1e-8)
    monkeypatch.setattr(rule, "act", right)
    assert sl.check_invariance(model, G, x, samples=6, tol=1e-8).passed


def test_the_head_permutation_moves_whole_head_major_row_blocks():
    model = _model(Nano())
    x = _x()
    G = sl.symmetries(model, x)
    sd = model.state_dict()
    moved = G.act(G.element({"P[attn#heads]": torch.tensor([2, 0, 1])}), sd)
    w, w2 = sd["attn.c_attn.weight"], moved["attn.c_attn.weight"]
    for block in range(3):  # q, k, v: head i of the result is head perm[i] of the original
        rows = w[block * E : (block + 1) * E].reshape(H, D, E)
        assert torch.equal(w2[block * E : (block + 1) * E].reshape(H, D, E), rows[[2, 0, 1]])
    out = torch.func.functional_call(model, moved, (x,))
    assert (out - model(x)).abs().max() < 1e-9


@settings(max_examples=20)  # each example traces, derives and checks a model
@given(
    h=st.integers(1, 4),
    d=st.integers(1, 3),
    bias=st.booleans(),
    causal=st.booleans(),
    flash=st.booleans(),
    cut=st.sampled_from(["split", "chunk", "torch.split"]),
)
def test_nanogpt_variants(h, d, bias, causal, flash, cut):
    e = h * d
    attn = Nano(e=e, h=h, flash=flash, bias=bias, mask="causal" if causal else "none", cut=cut)
    model = nn.Sequential(nn.Linear(E, e), attn, nn.ReLU(), nn.Linear(e, 2)).double().eval()
    x = _x(t=4)
    G = _group(model, x)
    f = _heads(G)
    assert f["P[1#heads]"].order == math.factorial(h)
    assert f["GL[1#qk]"].dimension == h * d * d and f["GL[1#vo]"].dimension == h * d * d
