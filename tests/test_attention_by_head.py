"""A fused q/k/v Linear whose rows are laid out head by head (GPT-NeoX, Pythia: each head's
query, key and value rows in turn, ``view(B, T, H, 3 * D)`` then ``chunk(3, dim=-1)``): the
block gets its head symmetries, acted on part by part and put back in the Linear's order;
the outputs prove it, brute force over head permutations agrees, and acting as if the rows
were part by part is caught (symlab.frontend.patterns.attention_forms)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from patterns_util import force_export, scramble
from torch import nn

import symlab as sl
from symlab.symmetry import attention_rules


class NeoX(nn.Module):
    """GPT-NeoX's attention: one Linear, viewed as (heads, parts of each head), cut per head;
    ``sizes`` the query/key/value rows of each head, ``cut`` the call that cuts them, ``rot``
    rotary dimensions (the first ``rot`` of each head, GPT-NeoX's partial rotary)."""

    def __init__(self, e=8, h=2, sizes=(4, 4, 4), cut="chunk", rot=0, bias=True):
        super().__init__()
        self.h, self.sizes, self.cut, self.rot = h, sizes, cut, rot
        self.qkv = nn.Linear(e, h * sum(sizes), bias=bias)
        self.dense = nn.Linear(h * sizes[2], e, bias=bias)

    def rope(self, t):
        r, T = self.rot, t.shape[2]
        inv = 1.0 / (10000 ** (torch.arange(0, r, 2, dtype=t.dtype) / r))
        emb = torch.arange(T, dtype=t.dtype)[:, None] * inv[None, :]
        emb = torch.cat((emb, emb), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        a, rest = t[..., :r], t[..., r:]
        turned = torch.cat((-a[..., r // 2 :], a[..., : r // 2]), dim=-1)
        return torch.cat([a * cos + turned * sin, rest], dim=-1)

    def forward(self, x):
        B, T, _ = x.shape
        qkv = self.qkv(x).view(B, T, self.h, -1).transpose(1, 2)
        if self.cut == "chunk":
            q, k, v = qkv.chunk(3, dim=-1)
        else:
            q, k, v = qkv.split(list(self.sizes), dim=-1)
        if self.rot:
            q, k = self.rope(q), self.rope(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.dense(y.transpose(1, 2).reshape(B, T, -1))


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return scramble(NeoX(**kw).double().eval(), seed=seed)


def _x(seed=1, T=5):
    return torch.randn(2, T, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.double)


CASES = {
    "chunk": dict(),
    "split-unequal": dict(cut="split", sizes=(3, 3, 5)),
    "three-heads": dict(h=3, sizes=(2, 2, 2)),
    "partial-rotary": dict(rot=2),
    "no-bias": dict(bias=False),
}


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
@pytest.mark.parametrize("case", list(CASES))
def test_by_head_layout_gets_the_head_symmetries(case, export, monkeypatch):
    if export:
        force_export(monkeypatch)
    kw = CASES[case]
    model, x = _model(**kw), _x()
    G = sl.symmetries(model, x)
    (node,) = [n for n in G.graph.nodes() if n.op == "attention_fused"]
    sizes = kw.get("sizes", (4, 4, 4))
    assert node.attrs["by_head"] == ((0, kw.get("h", 2), sizes),)
    names = [f.name.split("#")[1].rstrip("]") for f in G.factors if f.internal]
    assert names == (["heads", "qk_rot", "qk", "vo"] if kw.get("rot") else ["heads", "qk", "vo"])
    assert not any(f.kind == "translation" for f in G.factors)  # key rows are not one block
    assert sl.check_invariance(model, G, x).passed
    assert sl.check_invariance(model, G, _x(seed=2, T=7)).passed


def _swap_heads(model, perm):
    """The Linear's rows moved head by head (each head's q, k, v rows together), the output
    Linear's columns with them."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    h, s = model.h, sum(model.sizes)
    sd["qkv.weight"] = sd["qkv.weight"].reshape(h, s, -1)[list(perm)].reshape(h * s, -1)
    sd["qkv.bias"] = sd["qkv.bias"].reshape(h, s)[list(perm)].reshape(-1)
    dv = model.sizes[2]
    sd["dense.weight"] = sd["dense.weight"].reshape(-1, h, dv)[:, list(perm)].reshape(-1, h * dv)
    return sd


def test_brute_force_head_permutations_match_the_derived_ones():
    """Every permutation of whole heads keeps the outputs and is what the derived S_3 does; a
    permutation of the rows part by part (the layout of nanoGPT's c_attn) does not."""
    model, x = _model(h=3, sizes=(2, 2, 2)), _x()
    G = sl.symmetries(model, x)
    heads = next(f for f in G.factors if f.name.endswith("#heads]"))
    ref, sd = model(x), model.state_dict()
    for perm in itertools.permutations(range(3)):
        by_hand = _swap_heads(model, perm)
        torch.testing.assert_close(torch.func.functional_call(model, by_hand, (x,)), ref)
        derived = G.act(G.element({heads.name: torch.tensor(perm)}), sd)
        for key in ("qkv.weight", "qkv.bias", "dense.weight"):
            torch.testing.assert_close(derived[key], by_hand[key])
    rows = sd["qkv.weight"].reshape(3, 3, 2, -1)[:, [1, 0, 2]].reshape(18, -1)  # parts, not heads
    wrong = dict(sd, **{"qkv.weight": rows})
    assert not torch.allclose(torch.func.functional_call(model, wrong, (x,)), ref, atol=1e-3)


def test_acting_part_by_part_without_the_layout_is_caught(monkeypatch):
    """The same rule with the rows taken as if laid out part by part moves the wrong rows:
    check_invariance on the real forward sees it."""
    model, x = _model(), _x()
    G = sl.symmetries(model, x)
    n = model.qkv.out_features
    monkeypatch.setattr(attention_rules, "_part_major", lambda heads, sizes: torch.arange(n))
    assert not sl.check_invariance(model, G, x, raise_on_failure=False).passed


def test_transformers_gpt_neox():
    """GPT-NeoX (Pythia) from a tiny configuration, partial rotary: derived and sound."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPTNeoXConfig(
        vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=12, max_position_embeddings=16, rotary_pct=0.5, use_cache=False,
    )  # fmt: skip
    cfg._attn_implementation = "sdpa"

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = transformers.GPTNeoXModel(cfg)

        def forward(self, ids):
            return self.m(input_ids=ids).last_hidden_state

    model = scramble(Wrap().double().eval())
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, ids)
    names = [f.name.split("#")[1].rstrip("]") for f in G.factors if f.internal]
    assert names == ["heads", "qk_rot", "qk", "vo"]
    assert sl.check_invariance(model, G, ids).passed
