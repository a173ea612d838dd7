"""Rotary embeddings and grouped-query attention in the attention matcher: the derived group
(complex scalings per rotary pair on (W_Q, W_K), GL on (W_V, W_O) per key/value group, heads
permuted by the wreath product S_n ≀ S_G) holds on miniatures of both layouts and on the real
transformers classes, brute force over head permutations finds exactly it, the tangent space
of score-preserving maps of (W_Q, W_K) is exactly its Lie algebra, and breaking it fails."""

from __future__ import annotations

import importlib
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from patterns_util import force_export, scramble
from torch import nn

import symlab as sl
from symlab.symmetry.rope_rules import head_maps, rope_matrix


class RopeAttention(nn.Module):
    """Attention with rotary embeddings (``layout`` half or interleaved, the first ``rot``
    dimensions of each head) and ``kv`` key/value heads shared by ``heads // kv`` queries."""

    def __init__(self, d=8, heads=4, kv=2, hd=4, layout="half", rot=None, mode="eager"):
        super().__init__()
        self.h, self.kv, self.hd, self.layout, self.mode = heads, kv, hd, layout, mode
        self.rot = rot or hd
        self.q, self.k = nn.Linear(d, heads * hd), nn.Linear(d, kv * hd)
        self.v, self.o = nn.Linear(d, kv * hd), nn.Linear(heads * hd, d)
        inv = 1.0 / (10000 ** (torch.arange(0, self.rot, 2).double() / self.rot))
        self.register_buffer("inv_freq", inv, persistent=False)

    def rotate(self, x, cos, sin):
        r = self.rot
        xr, rest = (x, None) if r == self.hd else (x[..., :r], x[..., r:])
        if self.layout == "half":
            turned = torch.cat((-xr[..., r // 2 :], xr[..., : r // 2]), dim=-1)
        else:
            turned = torch.stack((-xr[..., 1::2], xr[..., ::2]), dim=-1).flatten(-2)
        out = xr * cos + turned * sin
        return out if r == self.hd else torch.cat([out, rest], dim=-1)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        freqs = torch.arange(T, dtype=x.dtype)[:, None] * self.inv_freq[None, :]
        if self.layout == "half":
            emb = torch.cat((freqs, freqs), dim=-1)
        else:
            emb = freqs.repeat_interleave(2, dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        n = self.h // self.kv
        if self.mode == "enable_gqa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            if n > 1:  # transformers' repeat_kv
                k = k[:, :, None, :, :].expand(B, self.kv, n, T, self.hd).reshape(B, self.h, T, -1)
                v = v[:, :, None, :, :].expand(B, self.kv, n, T, self.hd).reshape(B, self.h, T, -1)
            if self.mode == "sdpa":
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                a = (q @ k.transpose(-2, -1) / math.sqrt(self.hd)).softmax(dim=-1)
                y = a @ v
        return self.o(y.transpose(1, 2).reshape(B, T, self.h * self.hd))


CASES = {  # name: (kwargs, expected factor kinds of the block)
    "half-mha": (dict(kv=4), ["permutation", "complex_scaling", "GL"]),
    "half-gqa-sdpa": (dict(mode="sdpa"), ["permutation", "permutation", "complex_scaling", "GL"]),
    "interleaved-gqa": (dict(layout="interleaved"),
                        ["permutation", "permutation", "complex_scaling", "GL"]),
    "partial-gqa": (dict(rot=2), ["permutation", "permutation", "complex_scaling", "GL", "GL"]),
    "enable-gqa": (dict(mode="enable_gqa"),
                   ["permutation", "permutation", "complex_scaling", "GL"]),
}  # fmt: skip


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return RopeAttention(**kw).double().eval()


def _x(seed=1, T=6):
    return torch.randn(2, T, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.double)


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
@pytest.mark.parametrize("case", list(CASES))
def test_rope_gqa_block_group(case, export, monkeypatch):
    if export:
        force_export(monkeypatch)
    kw, kinds = CASES[case]
    model, x = _model(**kw), _x()
    G = sl.symmetries(model, x)
    node = next(n for n in G.graph.nodes() if n.op == "attention_linear")
    assert node.attrs["rope_layout"] == kw.get("layout", "half")
    assert node.attrs.get("num_kv_heads", 4) == kw.get("kv", 2)
    assert [f.kind for f in G.factors if f.internal] == kinds
    assert not any(f.kind == "translation" for f in G.factors)  # a rotated key bias is not free
    assert sl.check_invariance(model, G, x).passed
    assert sl.check_invariance(model, G, _x(seed=2, T=9)).passed  # another length too


def _moved(model, x, q_heads=None, kv_heads=None, mats_q=None, mats_k=None):
    """Outputs after permuting query heads / key-value heads (with o's columns and v's rows)
    and multiplying query and key rows of each head by given matrices."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    hd = model.hd

    def rows(key, perm, mats, h):
        w = sd[key].reshape(h, hd, -1)
        if perm is not None:
            w = w[list(perm)]
        if mats is not None:
            w = torch.einsum("hij,hjk->hik", mats, w)
        sd[key] = w.reshape(sd[key].shape)

    for p in ("weight", "bias"):
        rows(f"q.{p}", q_heads, mats_q, model.h)
        rows(f"k.{p}", kv_heads, mats_k, model.kv)
        rows(f"v.{p}", kv_heads, None, model.kv)
    if q_heads is not None:
        cols = sd["o.weight"].T.reshape(model.h, hd, -1)[list(q_heads)]
        sd["o.weight"] = cols.reshape(-1, sd["o.weight"].shape[0]).T
    return torch.func.functional_call(model, sd, (x,))


def test_brute_force_head_permutations_are_the_wreath_product():
    """Every (query-head, key/value-head) permutation pair that keeps the outputs, found by
    trying all 4! × 2!, is an element of S_2 ≀ S_2 as derived (8 elements), and back."""
    model, x = _model(), _x()
    ref = model(x)
    found = {
        (qp, kp)
        for qp in itertools.permutations(range(4))
        for kp in itertools.permutations(range(2))
        if torch.allclose(_moved(model, x, qp, kp), ref, atol=1e-9)
    }
    G = sl.symmetries(model, x)
    node = next(n for n in G.graph.nodes() if n.op == "attention_linear")
    derived = set()
    for pi in itertools.permutations(range(2)):
        for sig in itertools.product(itertools.permutations(range(2)), repeat=2):
            internal = {"heads": torch.tensor(pi), "qheads": torch.tensor(sig)}
            hm = head_maps(node, internal, 4)
            derived.add((tuple(hm.q_perm.tolist()), tuple(hm.kv_perm.tolist())))
    heads = [f for f in G.factors if f.internal and f.kind == "permutation"]
    assert math.prod(int(f.order) for f in heads) == 8
    assert found == derived and len(found) == 8


def test_wreath_elements_act_as_derived():
    """The group's own elements (heads, queries within groups) keep the outputs; a query head
    moved to another group (a permutation outside the wreath product) does not."""
    model, x = _model(), _x()
    G = sl.symmetries(model, x)
    name = next(f.name for f in G.factors if f.name.endswith("#qheads]"))
    heads = next(f.name for f in G.factors if f.name.endswith("#heads]"))
    h = G.element({heads: torch.tensor([1, 0]), name: torch.tensor([[1, 0], [0, 1]])})
    sd = G.act(h, model.state_dict())
    assert torch.allclose(torch.func.functional_call(model, sd, (x,)), model(x), atol=1e-10)
    assert not torch.allclose(_moved(model, x, (2, 1, 0, 3), (0, 1)), model(x), atol=1e-3)


def _generators(layout, hd, rot):
    """A basis of the derived Lie algebra on (W_Q, W_K): I and J on each rotary pair, every
    matrix unit on the dimensions left alone."""
    gens = []
    p = rot // 2
    for i in range(p):
        for z in (1.0 + 0j, 1j):
            zz = torch.zeros(1, p, dtype=torch.complex128)
            zz[0, i] = z
            gens.append(rope_matrix(zz, layout, hd, None)[0])
    for a in range(rot, hd):
        for b in range(rot, hd):
            e = torch.zeros(hd, hd, dtype=torch.float64)
            e[a, b] = 1.0
            gens.append(e)
    return torch.stack([g.reshape(-1) for g in gens])


@pytest.mark.parametrize("layout,rot", [("half", 4), ("interleaved", 4), ("half", 2)])
def test_score_preserving_maps_are_exactly_the_commutant(layout, rot):
    """Both directions for the continuous part: the maps W_Q ↦ (I + εX) W_Q, W_K ↦ (I - εXᵀ) W_K
    of one key/value group that keep the outputs to first order form a space of dimension
    rot + (hd - rot)² (not hd²), spanned by the derived generators."""
    model, x = _model(layout=layout, rot=rot, kv=2), _x()
    hd, sd = model.hd, dict(model.state_dict())

    def out(X):
        X = X.reshape(hd, hd)
        moved = dict(sd)
        wq = sd["q.weight"].reshape(4, hd, -1).clone()
        wq[:2] = torch.einsum("ij,hjk->hik", torch.eye(hd, dtype=X.dtype) + X, wq[:2])
        wk = sd["k.weight"].reshape(2, hd, -1).clone()
        wk[0] = (torch.eye(hd, dtype=X.dtype) - X.T) @ wk[0]
        bq = sd["q.bias"].reshape(4, hd).clone()
        bq[:2] = bq[:2] @ (torch.eye(hd, dtype=X.dtype) + X).T
        bk = sd["k.bias"].reshape(2, hd).clone()
        bk[0] = (torch.eye(hd, dtype=X.dtype) - X.T) @ bk[0]
        moved.update(
            {
                "q.weight": wq.reshape(sd["q.weight"].shape),
                "q.bias": bq.reshape(-1),
                "k.weight": wk.reshape(sd["k.weight"].shape),
                "k.bias": bk.reshape(-1),
            }
        )
        return torch.func.functional_call(model, moved, (x,)).reshape(-1)  # fmt: skip

    jac = torch.func.jacfwd(out)(torch.zeros(hd * hd, dtype=torch.float64))
    sv = torch.linalg.svdvals(jac)
    null_dim = hd * hd - int((sv > 1e-8 * sv[0]).sum())
    assert null_dim == rot + (hd - rot) ** 2
    gens = _generators(layout, hd, rot)
    assert gens.shape[0] == null_dim
    assert (jac @ gens.T).abs().max() < 1e-9  # derived ⊂ kernel


def test_general_gl_on_rotary_queries_breaks_the_outputs():
    """Negative control: a generic invertible A on a head's queries with A⁻ᵀ on its keys (the
    symmetry without rotary embeddings) changes the outputs once RoPE is on."""
    model, x = _model(kv=4), _x()
    g = torch.Generator().manual_seed(3)
    a = torch.eye(4, dtype=torch.double) + 0.5 * torch.randn(4, 4, generator=g, dtype=torch.double)
    mats_q = torch.stack([a] + [torch.eye(4, dtype=torch.double)] * 3)
    mats_k = torch.linalg.inv(mats_q).transpose(-1, -2)
    assert not torch.allclose(_moved(model, x, mats_q=mats_q, mats_k=mats_k), model(x), atol=1e-3)


class NotRope(RopeAttention):
    """Near misses: no negation in the swap (a reflection), or cos not pair-symmetric."""

    def __init__(self, how):
        super().__init__(kv=4)
        self.how = how

    def rotate(self, x, cos, sin):
        h = self.hd // 2
        if self.how == "no_negation":
            return x * cos + torch.cat((x[..., h:], x[..., :h]), dim=-1) * sin
        return x * torch.flip(cos, dims=[-1]) + torch.cat((-x[..., h:], x[..., :h]), -1) * sin


@pytest.mark.parametrize("how", ["no_negation", "unpaired_angles"])
def test_near_misses_are_not_rope(how):
    torch.manual_seed(0)
    model, x = NotRope(how).double().eval(), _x()
    try:
        G = sl.symmetries(model, x)
    except sl.errors.UnsupportedOpError:
        return  # refused: fail closed
    assert not any(n.op == "attention_linear" for n in G.graph.nodes())
    assert sl.check_invariance(model, G, x).passed


# -- the real transformers classes ----------------------------------------------------------


def _hf_attention(name):
    transformers = pytest.importorskip("transformers")
    mod = importlib.import_module(f"transformers.models.{name}.modeling_{name}")
    prefix = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}[name]
    cfg = getattr(transformers, f"{prefix}Config")(
        hidden_size=8, num_attention_heads=4, num_key_value_heads=2, head_dim=4,
        max_position_embeddings=16, vocab_size=11, intermediate_size=8,
    )  # fmt: skip
    cfg._attn_implementation = "sdpa"

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.rotary = getattr(mod, f"{prefix}RotaryEmbedding")(cfg)
            self.attn = getattr(mod, f"{prefix}Attention")(cfg, layer_idx=0)

        def forward(self, x):
            pos = torch.arange(x.shape[1])[None]
            return self.attn(x, self.rotary(x, pos), None)[0]

    return scramble(Block().double().eval())


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_transformers_attention_classes(name):
    model, x = _hf_attention(name), _x()
    G = sl.symmetries(model, x)
    node = next(n for n in G.graph.nodes() if n.op == "attention_linear")
    assert (node.attrs["num_kv_heads"], node.attrs["rope_layout"]) == (2, "half")
    assert [f.short() for f in G.factors if f.internal] == ["S_2", "S_2^2", "(C*^2)^2", "GL_4^2"]
    assert sl.check_invariance(model, G, x).passed


@pytest.mark.parametrize("name", ["Llama", "Gemma"])
def test_transformers_decoder_models(name):
    """Whole tiny decoders (RMSNorm, RoPE, GQA, SwiGLU): derived and sound."""
    transformers = pytest.importorskip("transformers")
    cfg = getattr(transformers, f"{name}Config")(
        vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=4, max_position_embeddings=16,
    )  # fmt: skip
    cfg._attn_implementation = "sdpa"

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = getattr(transformers, f"{name}Model")(cfg)

        def forward(self, ids):
            return self.m(input_ids=ids, use_cache=False).last_hidden_state

    model = scramble(Wrap().double().eval())
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, ids)
    ops = {n.op for n in G.graph.nodes()}
    assert {"attention_linear", "rmsnorm_offset" if name == "Gemma" else "rmsnorm"} <= ops
    assert any(f.kind == "complex_scaling" for f in G.factors)
    assert sl.check_invariance(model, G, ids).passed


class FalconStyle(nn.Module):
    """Multi-query attention from one fused Linear viewed as heads and split on the head axis
    (``view(B, T, H + 2, D).split([H, 1, 1], dim=-2)``, Falcon), with RoPE."""

    def __init__(self, d=8, heads=4, hd=2):
        super().__init__()
        self.h, self.hd = heads, hd
        self.qkv, self.o = nn.Linear(d, (heads + 2) * hd), nn.Linear(heads * hd, d)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, -1, self.hd).split([self.h, 1, 1], dim=-2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        freqs = torch.arange(T, dtype=x.dtype)[:, None] * torch.tensor([1.0], dtype=x.dtype)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]

        def rot(t):
            return t * cos + torch.cat((-t[..., 1:], t[..., :1]), dim=-1) * sin

        q, k = rot(q), rot(k)
        k = k[:, :, None].expand(B, 1, self.h, T, self.hd).reshape(B, self.h, T, self.hd)
        v = v[:, :, None].expand(B, 1, self.h, T, self.hd).reshape(B, self.h, T, self.hd)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_multi_query_fused_split_on_heads(export, monkeypatch):
    if export:
        force_export(monkeypatch)
    torch.manual_seed(0)
    model, x = FalconStyle().double().eval(), _x()
    G = sl.symmetries(model, x)
    node = next(n for n in G.graph.nodes() if n.op == "attention_fused")
    assert node.attrs["num_kv_heads"] == 1 and node.attrs["roles"] == ((0, 0, 8), (0, 8, 2),
                                                                        (0, 10, 2))  # fmt: skip
    assert [f.short() for f in G.factors if f.internal] == ["S_1", "S_4", "(C*^1)", "GL_2"]
    assert sl.check_invariance(model, G, x).passed


@pytest.mark.parametrize("case", ["half-gqa-sdpa", "partial-gqa"])
def test_group_laws_with_complex_scalings_and_wreath_heads(case):
    """compose and inverse of the new factor kinds agree with acting twice / undoing."""
    model, x = _model(**CASES[case][0]), _x()
    G = sl.symmetries(model, x)
    sd = dict(model.state_dict())
    h1, h2 = G.sample(1), G.sample(2)
    twice = G.act(h1, G.act(h2, sd))
    once = G.act(G.compose(h1, h2), sd)
    assert all(torch.allclose(twice[k], once[k], atol=1e-9) for k in sd)
    back = G.act(G.inverse(h1), G.act(h1, sd))
    assert all(torch.allclose(back[k], sd[k], atol=1e-9) for k in sd)
    assert G.dimension == sum(int(f.dimension) for f in G.factors)
    shown = repr(G)  # the display acts with each factor alone (a rotary part without the rest)
    assert "C[" in shown and "#qheads]" in shown
    from symlab.symmetry.spec_io import export

    assert export(G).to_perm_to_axes() == G.permutation_spec()  # head perms left out
