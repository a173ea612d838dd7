"""nanoGPT as written (Karpathy's model.py, abridged): traced through the torch.export fallback
(fx cannot trace its size assert), fused c_attn attention recognised on both paths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl


class CSA(nn.Module):
    def __init__(s, E=8, H=2, T=6, flash=False):
        super().__init__()
        s.c_attn = nn.Linear(E, 3 * E)
        s.c_proj = nn.Linear(E, E)
        s.n_head = H
        s.n_embd = E
        s.flash = flash
        s.register_buffer("bias", torch.tril(torch.ones(T, T)).view(1, 1, T, T))

    def forward(s, x):
        B, T, C = x.size()
        q, k, v = s.c_attn(x).split(s.n_embd, dim=2)
        k = k.view(B, T, s.n_head, C // s.n_head).transpose(1, 2)
        q = q.view(B, T, s.n_head, C // s.n_head).transpose(1, 2)
        v = v.view(B, T, s.n_head, C // s.n_head).transpose(1, 2)
        if s.flash:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(s.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return s.c_proj(y)


class MLP(nn.Module):
    def __init__(s, E):
        super().__init__()
        s.c_fc = nn.Linear(E, 4 * E)
        s.gelu = nn.GELU()
        s.c_proj = nn.Linear(4 * E, E)

    def forward(s, x):
        return s.c_proj(s.gelu(s.c_fc(x)))


class Block(nn.Module):
    def __init__(s, E, flash):
        super().__init__()
        s.ln_1 = nn.LayerNorm(E)
        s.attn = CSA(flash=flash)
        s.ln_2 = nn.LayerNorm(E)
        s.mlp = MLP(E)

    def forward(s, x):
        x = x + s.attn(s.ln_1(x))
        return x + s.mlp(s.ln_2(x))


class GPT(nn.Module):
    def __init__(s, flash, V=11, E=8, T=6):
        super().__init__()
        s.T = T
        s.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(V, E),
                wpe=nn.Embedding(T, E),
                h=nn.ModuleList([Block(E, flash) for _ in range(2)]),
                ln_f=nn.LayerNorm(E),
            )
        )
        s.lm_head = nn.Linear(E, V, bias=False)

    def forward(s, idx):
        _, t = idx.size()
        assert t <= s.T
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = s.transformer.wte(idx) + s.transformer.wpe(pos)
        for blk in s.transformer.h:
            x = blk(x)
        return s.lm_head(s.transformer.ln_f(x))


@pytest.mark.parametrize("flash", [True, False])
def test_nanogpt_group(flash: bool) -> None:
    torch.manual_seed(0)
    model = GPT(flash).double().eval()
    for mod in model.modules():
        if isinstance(mod, nn.LayerNorm):
            mod.eps = 1e-12
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, idx)
    assert G.graph.frontend == "torch.export"
    names = {f.name: f for f in G.factors}
    for i in (0, 1):
        attn = f"transformer.h.{i}.attn"
        assert names[f"P[{attn}#heads]"].order == 2
        assert names[f"GL[{attn}#qk]"].dimension == 2 * 4 * 4
        assert int(names[f"T[{attn}#key_bias]"].size) == 8
        assert int(names[f"P[transformer.h.{i}.mlp.c_fc]"].size) == 32
    stream = [f for f in G.factors if ("transformer.wte.weight", 1) in f.axes]
    assert [f.kind for f in stream] == ["permutation", "common_scaling", "common_sign"]
    assert sl.check_invariance(model, G, idx).passed


def test_tied_embedding_and_head() -> None:
    """nanoGPT ties ``wte.weight`` and ``lm_head.weight``: the residual stream and the final
    LayerNorm's output then share one map that is its own inverse (signs, no scalings)."""
    torch.manual_seed(0)
    model = GPT(True).double().eval()
    untied = GPT(True).double().eval()
    untied.load_state_dict(model.state_dict())
    model.transformer.wte.weight = model.lm_head.weight
    for mod in [*model.modules(), *untied.modules()]:
        if isinstance(mod, nn.LayerNorm):
            mod.eps = 1e-12
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, idx)
    assert G.graph.tied_keys == (("transformer.wte.weight", "lm_head.weight"),)
    stream = [f.kind for f in G.factors if ("transformer.wte.weight", 1) in f.axes]
    assert stream == ["permutation", "common_sign"]
    assert ("lm_head.weight", 1) in next(
        f for f in G.factors if f.name == "P[transformer.wte]"
    ).axes
    assert sl.check_invariance(model, G, idx).passed
    moved = G.act(G.sample(0), model.state_dict())
    assert torch.equal(moved["transformer.wte.weight"], moved["lm_head.weight"])
    # negative control: the untied model's group moves the two copies apart
    U = sl.symmetries(untied, idx)
    apart = U.act(U.sample(0), model.state_dict())
    assert not torch.allclose(apart["transformer.wte.weight"], apart["lm_head.weight"])


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("head", ["softmax", "log_softmax"])
def test_tied_weights_with_a_softmax_head_drop_only_the_weight_shift(bias, head) -> None:
    """A tied output layer read by a softmax: the shift of its weight rows would move one copy
    only, so it is left out; the rest of the group (and a bias shift) is derived and sound."""

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.fc = nn.Embedding(7, 4), nn.Linear(4, 4)
            self.head = nn.Linear(4, 7, bias=bias)
            self.head.weight = self.emb.weight

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return getattr(self.head(torch.tanh(self.fc(self.emb(idx)))), head)(-1)

    torch.manual_seed(0)
    model, idx = LM().double().eval(), torch.randint(0, 7, (2, 5))
    G = sl.symmetries(model, idx)
    shifts = [f for f in G.factors if f.kind == "translation"]
    assert [int(f.size) for f in shifts] == ([1] if bias else [])  # the bias shift alone
    assert sl.check_invariance(model, G, idx, samples=8, raise_on_failure=False).passed
    moved = G.act(G.sample(1), model.state_dict())
    assert torch.equal(moved["emb.weight"], moved["head.weight"])
