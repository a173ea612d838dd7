"""Normalised queries and keys (QK-norm), soft-capped scores and per-token factors in the
attention matcher: the block keeps its head permutations (a norm weight over all heads moving
with its head blocks) and GL on values/output, loses the maps of queries and keys and the key
bias's freedom; every form is checked on the real forward through both front-ends, brute force
over head permutations agrees, and the near misses (a norm on the values, on a fused
projection before its cut, a factor that differs between heads) are not matched."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from patterns_util import force_export, scramble
from torch import nn

import symlab as sl


class HandRMSNorm(nn.Module):
    """RMSNorm written by hand (Qwen3RMSNorm's forward)."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        v = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(v + 1e-30))


NORMS = {
    "hand": HandRMSNorm,
    "rmsnorm": lambda n: nn.RMSNorm(n, eps=1e-30),
    "layernorm": lambda n: nn.LayerNorm(n, eps=1e-30),
}


class QKNormAttention(nn.Module):
    """Attention with a norm of the queries and keys over each head (``scope="head"``: Qwen3)
    or over the whole projection (``"full"``: OLMo-2), optional RoPE, ``kv`` key/value heads,
    a soft cap on the scores (Gemma-2) and a fixed per-position factor on the queries
    (Ministral-3). ``norm_on`` names the projections normalised."""

    def __init__(self, d=8, heads=4, kv=2, hd=4, norm="hand", scope="head", rope=True,
                 cap=None, qscale=False, norm_on="qk", bias=False):  # fmt: skip
        super().__init__()
        self.h, self.kv, self.hd, self.rope, self.cap, self.qscale = (
            heads,
            kv,
            hd,
            rope,
            cap,
            qscale,
        )
        self.scope, self.norm_on = scope, norm_on
        self.q, self.k = nn.Linear(d, heads * hd, bias=bias), nn.Linear(d, kv * hd, bias=bias)
        self.v, self.o = nn.Linear(d, kv * hd, bias=bias), nn.Linear(heads * hd, d)
        make = NORMS[norm]
        widths = {"q": heads * hd, "k": kv * hd, "v": kv * hd}
        self.norms = nn.ModuleDict({p: make(hd if scope == "head" else widths[p]) for p in norm_on})

    def _proj(self, name, x, h):
        B, T, _ = x.shape
        y = getattr(self, name)(x)
        if name in self.norm_on and self.scope == "full":
            y = self.norms[name](y)
        y = y.view(B, T, h, self.hd)
        if name in self.norm_on and self.scope == "head":
            y = self.norms[name](y)
        return y.transpose(1, 2)

    def qkv(self, x):
        return self._proj("q", x, self.h), self._proj("k", x, self.kv), self._proj("v", x, self.kv)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x)
        if self.rope:
            inv = 1.0 / (10000 ** (torch.arange(0, self.hd, 2, dtype=x.dtype) / self.hd))
            emb = torch.arange(T, dtype=x.dtype)[:, None] * inv[None, :]
            emb = torch.cat((emb, emb), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]

            def rot(t):
                half = self.hd // 2
                return t * cos + torch.cat((-t[..., half:], t[..., :half]), dim=-1) * sin

            q, k = rot(q), rot(k)
        if self.qscale:  # one fixed number per position, every head and dimension alike
            q = q * (1 + 0.1 * torch.arange(T, dtype=x.dtype)).view(1, 1, T, 1)
        n = self.h // self.kv
        if n > 1:
            k = k[:, :, None].expand(B, self.kv, n, T, self.hd).reshape(B, self.h, T, self.hd)
            v = v[:, :, None].expand(B, self.kv, n, T, self.hd).reshape(B, self.h, T, self.hd)
        s = q @ k.transpose(-2, -1) / math.sqrt(self.hd)
        if self.cap is not None:
            s = torch.tanh(s / self.cap) * self.cap
        y = s.softmax(dim=-1) @ v
        return self.o(y.transpose(1, 2).reshape(B, T, self.h * self.hd))


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return scramble(QKNormAttention(**kw).double().eval(), seed=seed)


def _x(seed=1, T=6):
    return torch.randn(2, T, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.double)


def _block(G):
    return next((n for n in G.graph.nodes() if n.op.startswith("attention_")), None)


def _internal(G):
    return [f.name.split("#")[1].rstrip("]") for f in G.factors if f.internal]


CASES = {  # name: kwargs
    "hand-head-rope-gqa": dict(),
    "module-rmsnorm-head": dict(norm="rmsnorm", kv=4),
    "module-layernorm-head": dict(norm="layernorm", rope=False),
    "hand-full-gqa": dict(scope="full"),
    "module-rmsnorm-full": dict(norm="rmsnorm", scope="full", kv=4, rope=False),
    "layernorm-full-bias": dict(norm="layernorm", scope="full", bias=True),
    "k-only": dict(norm_on="k"),
}


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
@pytest.mark.parametrize("case", list(CASES))
def test_qk_norm_block_keeps_heads_and_values(case, export, monkeypatch):
    if export:
        force_export(monkeypatch)
    kw = CASES[case]
    model, x = _model(**kw), _x()
    G = sl.symmetries(model, x)
    node = _block(G)
    assert node is not None and node.op == "attention_linear"
    scope = kw.get("scope", "head")
    assert [(r, s) for r, s, _ in node.attrs["qk_norm"]] == [
        (p, scope) for p in kw.get("norm_on", "qk")
    ]
    expected = ["heads", "qheads", "vo"] if kw.get("kv", 2) == 2 else ["heads", "vo"]
    assert _internal(G) == expected  # no qk, no qk_rot: normalised queries/keys do not move
    assert not any(f.kind == "translation" and "attn" in f.name for f in G.factors)
    assert sl.check_invariance(model, G, x).passed
    assert sl.check_invariance(model, G, _x(seed=2, T=9)).passed


def test_full_scope_weight_moves_with_its_heads():
    """A head swap moves a norm weight over all heads block by block (OLMo-2); the same swap
    without moving the weight changes the output, so the move is needed, not incidental."""
    model, x = _model(scope="full", kv=4, rope=False), _x()
    G = sl.symmetries(model, x)
    heads = next(f for f in G.factors if f.name.endswith("#heads]"))
    sd = model.state_dict()
    moved = G.act(G.element({heads.name: torch.tensor([1, 0, 2, 3])}), sd)
    for p, h in (("q", 4), ("k", 4)):
        w = sd[f"norms.{p}.weight"].reshape(h, -1)
        assert torch.equal(moved[f"norms.{p}.weight"].reshape(h, -1), w[[1, 0, 2, 3]])
    out = torch.func.functional_call(model, moved, (x,))
    torch.testing.assert_close(out, model(x))
    kept = dict(moved, **{f"norms.{p}.weight": sd[f"norms.{p}.weight"] for p in "qk"})
    assert not torch.allclose(torch.func.functional_call(model, kept, (x,)), model(x), atol=1e-3)


@pytest.mark.parametrize("scope", ["head", "full"])
def test_brute_force_head_permutations_all_hold(scope):
    """Every joint permutation of the heads (q, k, v rows, o columns, a full-scope norm
    weight's blocks) keeps the outputs, as the derived S_4 says; a permutation of the queries
    alone does not."""
    model, x = _model(scope=scope, kv=4), _x()
    G = sl.symmetries(model, x)
    heads = next(f for f in G.factors if f.name.endswith("#heads]"))
    assert heads.size == 4
    ref, sd = model(x), model.state_dict()
    for perm in itertools.permutations(range(4)):
        out = torch.func.functional_call(
            model, G.act(G.element({heads.name: torch.tensor(perm)}), sd), (x,)
        )
        torch.testing.assert_close(out, ref)
    only_q = dict(
        sd, **{"q.weight": sd["q.weight"].reshape(4, 4, -1)[[1, 0, 2, 3]].reshape(16, -1)}
    )
    assert not torch.allclose(torch.func.functional_call(model, only_q, (x,)), ref, atol=1e-3)


def test_gl_on_normalised_queries_breaks_the_outputs():
    """What the block no longer claims: a map of a head's queries with its inverse transpose on
    the keys keeps q·k, but not through the norm."""
    model, x = _model(kv=4, rope=False), _x()
    sd = model.state_dict()
    m = torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.double)
    mk = torch.linalg.inv(m).T
    moved = dict(sd)
    for key, mat in (("q.weight", m), ("k.weight", mk)):
        w = sd[key].reshape(4, 4, -1).clone()
        w[0] = mat @ w[0]
        moved[key] = w.reshape(16, -1)
    assert not torch.allclose(torch.func.functional_call(model, moved, (x,)), model(x), atol=1e-3)
    assert sl.check_invariance(model, sl.symmetries(model, x), x).passed


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_soft_cap_keeps_the_scores_maps_but_not_the_key_bias(export, monkeypatch):
    if export:
        force_export(monkeypatch)
    x = _x()
    plain = _model(norm_on="", bias=True, rope=False)
    capped = _model(norm_on="", bias=True, rope=False, cap=2.0)
    G0, G1 = sl.symmetries(plain, x), sl.symmetries(capped, x)
    assert _internal(G1) == _internal(G0) == ["heads", "qheads", "qk", "vo"]
    kinds0 = [f.kind for f in G0.factors if "translation" in f.kind]
    assert kinds0 and not [f.kind for f in G1.factors if "translation" in f.kind]
    assert sl.check_invariance(capped, G1, x).passed


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_per_position_query_factor_keeps_every_map(export, monkeypatch):
    if export:
        force_export(monkeypatch)
    model, x = _model(norm_on="", qscale=True), _x()
    G = sl.symmetries(model, x)
    assert _internal(G) == ["heads", "qheads", "qk_rot", "vo"]
    assert sl.check_invariance(model, G, x).passed


@pytest.mark.parametrize("kv", [1, 2])
def test_grouped_key_bias_translation_spans_the_key_rows(kv):
    """With fewer key heads than query heads the free key bias is the keys' own rows (a
    regression: it was sized by the query heads, and acting with it failed)."""
    model, x = _model(norm_on="", rope=False, bias=True, kv=kv), _x()
    G = sl.symmetries(model, x)
    (tr,) = [f for f in G.factors if "translation" in f.kind]
    assert tr.size == kv * 4
    assert sl.check_invariance(model, G, x).passed


# -- near misses: not matched, and still sound -----------------------------------------------


class NormOnValues(QKNormAttention):
    def __init__(self):
        super().__init__(norm_on="qkv", rope=False)


class FusedNormedBeforeCut(nn.Module):
    """One norm over the fused q/k/v rows, then the cut: the norm mixes values with keys."""

    def __init__(self, d=8, heads=2, hd=4):
        super().__init__()
        self.h, self.hd = heads, hd
        self.qkv, self.o = nn.Linear(d, 3 * heads * hd), nn.Linear(heads * hd, d)
        self.norm = HandRMSNorm(3 * heads * hd)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.norm(self.qkv(x)).split(self.h * self.hd, dim=-1)
        q, k, v = (t.view(B, T, self.h, self.hd).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o(y.transpose(1, 2).reshape(B, T, -1))


class PerHeadFactor(QKNormAttention):
    """A fixed factor on the queries that differs between heads: heads are told apart."""

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x)
        q = q * torch.arange(1, self.h + 1, dtype=x.dtype).view(1, self.h, 1, 1)
        y = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.o(y.transpose(1, 2).reshape(B, T, self.h * self.hd))


class SharedNormWeight(QKNormAttention):
    """The queries' norm weight is read by another branch too: it is not the block's own."""

    def forward(self, x):
        y = super().forward(x)
        return y + self.norms["q"].weight.sum()


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
@pytest.mark.parametrize(
    "make",
    [NormOnValues, FusedNormedBeforeCut,
     lambda: PerHeadFactor(norm_on="", rope=False), lambda: SharedNormWeight(rope=False)],
    ids=["norm-on-values", "fused-normed-before-cut", "per-head-factor", "shared-norm-weight"],
)  # fmt: skip
def test_near_misses_are_not_matched(make, export, monkeypatch):
    if export:
        force_export(monkeypatch)
    torch.manual_seed(0)
    model, x = scramble(make().double().eval()), _x()
    G = sl.symmetries(model, x)
    assert _block(G) is None
    assert not any(f.internal for f in G.factors)
    assert sl.check_invariance(model, G, x).passed


# -- the real transformers classes ----------------------------------------------------------


@pytest.mark.parametrize("name", ["Qwen3", "Olmo2", "Gemma2", "Gemma3Text"])
def test_transformers_decoders_with_qk_norm_or_soft_cap(name):
    """Whole tiny decoders: Qwen3 and Gemma-3 (a norm per head), OLMo-2 (over all heads),
    Gemma-2 (a soft cap on the scores): head permutations and the values' GL are derived and
    hold on the real forward."""
    transformers = pytest.importorskip("transformers")
    cfg = getattr(transformers, f"{name}Config")(
        vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, head_dim=4, max_position_embeddings=16,
    )  # fmt: skip
    cfg._attn_implementation = "eager" if name == "Gemma2" else "sdpa"  # soft cap: eager only
    model_cls = getattr(transformers, f"{name}Model")

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model_cls(cfg)

        def forward(self, ids):
            return self.m(input_ids=ids, use_cache=False).last_hidden_state

    model = scramble(Wrap().double().eval())
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, ids)
    assert _internal(G) == ["heads", "qheads", "vo"] or (
        name == "Gemma2" and _internal(G) == ["heads", "qheads", "qk_rot", "vo"]
    )
    node = _block(G)
    if name != "Gemma2":
        scope = "full" if name == "Olmo2" else "head"
        assert {s for _, s, _ in node.attrs["qk_norm"]} == {scope}
    assert sl.check_invariance(model, G, ids).passed
