"""GPT-2's Conv1D, weight sharing (modules called more than once), ALiBi per-head biases,
position embeddings and in-place ops on fixed data: miniatures, the real transformers classes,
both front-ends, negative controls and brute force where it fits."""

from __future__ import annotations

import math

import pytest
import torch
from patterns_util import force_export, scramble
from torch import nn

import symlab as sl


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D, written out (the real class is tested below)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)  # noqa: RUF005  (as transformers writes it)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_conv1d_is_a_transposed_linear(export, monkeypatch):
    if export:
        force_export(monkeypatch)
    torch.manual_seed(0)
    net = nn.Sequential(Conv1D(4, 3), nn.Tanh(), Conv1D(2, 4)).double()
    twin = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    twin.load_state_dict({k: v.T if v.ndim == 2 else v for k, v in net.state_dict().items()})
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    G, G_twin = sl.symmetries(net, x), sl.symmetries(twin, x)
    assert [n.op for n in G.graph.nodes()] == ["input", "linear_t", "activation", "linear_t",
                                               "output"]  # fmt: skip
    assert [(f.name, f.kind) for f in G.factors] == [(f.name, f.kind) for f in G_twin.factors]
    assert sl.check_invariance(net, G, x).passed
    bf = sl.brute_force_group(net, x)  # both directions on the discrete part
    missed, extra = bf.compare(G)
    assert not (missed.permutations or missed.signs or extra.permutations or extra.signs)
    # the action reads W as (in, out): a permutation of the hidden units moves columns of the
    # first weight and rows of the second; leaving the second alone changes the outputs
    sd = dict(net.state_dict())
    p = torch.tensor([1, 0, 3, 2])
    moved = G.act(G.element({"P[0]": p}), sd)
    assert torch.equal(moved["0.weight"], sd["0.weight"][:, p])
    assert torch.equal(moved["2.weight"], sd["2.weight"][p])
    wrong = dict(moved, **{"2.weight": sd["2.weight"]})
    ref = torch.func.functional_call(net, sd, (x,))
    assert not torch.allclose(torch.func.functional_call(net, wrong, (x,)), ref, atol=1e-3)


def _gpt2(attn: str, layers: int = 1):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=11, n_embd=8, n_layer=layers, n_head=2,
                                  n_positions=16, activation_function="relu")  # fmt: skip
    cfg._attn_implementation = attn

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = transformers.GPT2Model(cfg)

        def forward(self, ids):
            return self.m(input_ids=ids, use_cache=False).last_hidden_state

    return scramble(Wrap().double().eval())


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_transformers_gpt2(attn):
    """GPT-2: Conv1D in the MLP (linear_t) and as the fused q/k/v and output projections of
    attention (heads, GL per head, the free key bias)."""
    model = _gpt2(attn)
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, ids)
    ops = [n.op for n in G.graph.nodes()]
    assert ops.count("linear_t") == 2 and ops.count("attention_fused") == 1
    node = next(n for n in G.graph.nodes() if n.op == "attention_fused")
    assert node.attrs["transposed"] == ("m.h.0.attn.c_attn", "m.h.0.attn.c_proj")
    assert [f.short() for f in G.factors] == ["S_32", "R_{>0}^32", "S_2", "GL_4^2", "GL_4^2",
                                              "(R^8,+)"]  # fmt: skip
    assert sl.check_invariance(model, G, ids).passed


class SharedTwice(nn.Module):
    """One Linear applied to two inputs (same width), one applied twice in depth."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)
        self.shared = nn.Linear(4, 4)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        u = self.shared(torch.tanh(self.a(x)))
        v = self.shared(torch.tanh(self.b(x)))
        return self.out(torch.relu(torch.cat([u, v], dim=-1)))


def test_shared_linear_ties_its_calls():
    torch.manual_seed(0)
    net = SharedTwice().double()
    x = torch.randn(16, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    names = [n.name for n in G.graph.nodes()]
    assert "shared" in names and "shared@1" in names
    by_name = {f.name: f for f in G.factors}
    # the inputs of both calls (tanh(a x), tanh(b x)) share one permutation and sign: a, b tied
    assert by_name["P[a]"].kind == "permutation" and "P[b]" not in by_name
    assert sl.check_invariance(net, G, x).passed
    bf = sl.brute_force_group(net, x)  # both directions
    missed, extra = bf.compare(G)
    assert not (missed.permutations or missed.signs or extra.permutations or extra.signs)


def test_untied_calls_would_be_wrong():
    """Negative control: moving the inputs of the two calls of the shared layer differently
    (each call alone would allow it) changes the outputs."""
    torch.manual_seed(0)
    net = SharedTwice().double()
    x = torch.randn(16, 3, dtype=torch.float64)
    sd = dict(net.state_dict())
    p = torch.tensor([1, 0, 2, 3])
    moved = dict(sd, **{"a.weight": sd["a.weight"][p], "a.bias": sd["a.bias"][p],
                        "shared.weight": sd["shared.weight"][:, p]})  # fmt: skip
    ref = torch.func.functional_call(net, sd, (x,))
    assert not torch.allclose(torch.func.functional_call(net, moved, (x,)), ref, atol=1e-3)


class SharedLayers(nn.Module):
    """ALBERT-style: one block applied at every depth."""

    def __init__(self, d=6, hidden=5, depth=3) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(3, d), nn.Linear(d, 2)
        self.block = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.norm = nn.LayerNorm(d)
        self.depth = depth

    def forward(self, x):
        h = self.inp(x)
        for _ in range(self.depth):
            h = self.norm(h + self.block(h))
        return self.out(h)


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_albert_style_shared_layers(export, monkeypatch):
    if export:
        force_export(monkeypatch)
    torch.manual_seed(0)
    net = SharedLayers().double()
    x = torch.randn(8, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    hidden = [f for f in G.factors if f.kind == "permutation" and int(f.size) == 5]
    assert len(hidden) == 1  # one hidden space for the three calls
    assert sl.check_invariance(net, G, x).passed


def test_transformers_albert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AlbertConfig(vocab_size=11, embedding_size=4, hidden_size=8,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=6, max_position_embeddings=16,
                                    hidden_act="relu")  # fmt: skip
    cfg._attn_implementation = "sdpa"

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = transformers.AlbertModel(cfg)

        def forward(self, ids, tt, pos):
            return self.m(input_ids=ids, token_type_ids=tt, position_ids=pos).last_hidden_state

    model = scramble(Wrap().double().eval())
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    args = (ids, torch.zeros_like(ids), torch.arange(5)[None].expand(2, 5))
    G = sl.symmetries(model, args)
    assert any(f.kind == "permutation" and int(f.size) == 6 for f in G.factors)  # shared FFN
    assert sl.check_invariance(model, G, args).passed


class Alibi(nn.Module):
    """Attention with a fixed per-head linear bias on the scores (ALiBi), or a shared one."""

    def __init__(self, per_head=True, d=8, heads=4) -> None:
        super().__init__()
        self.h, self.hd, self.per_head = heads, d // heads, per_head
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        slopes = torch.tensor([2 ** (-8 * (i + 1) / heads) for i in range(heads)]).double()
        self.register_buffer("slopes", slopes if per_head else slopes[:1], persistent=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = (f(x).view(B, T, self.h, self.hd).transpose(1, 2) for f in (self.q, self.k,
                                                                              self.v))  # fmt: skip
        dist = (torch.arange(T)[None, :] - torch.arange(T)[:, None]).to(x.dtype)
        bias = self.slopes[:, None, None] * dist[None]  # (H or 1, T, T)
        a = (q @ k.transpose(-2, -1) / math.sqrt(self.hd) + bias).softmax(dim=-1)
        return self.o((a @ v).transpose(1, 2).reshape(B, T, D))


@pytest.mark.parametrize("export", [False, True], ids=["torch.fx", "torch.export"])
def test_alibi_heads_are_distinguishable(export, monkeypatch):
    if export:
        force_export(monkeypatch)
    torch.manual_seed(0)
    model, x = Alibi().double().eval(), torch.randn(2, 5, 8, dtype=torch.float64)
    G = sl.symmetries(model, x)
    node = next(n for n in G.graph.nodes() if n.op == "attention_linear")
    assert node.attrs["head_bias"] is True
    assert [f.short() for f in G.factors if f.internal] == ["GL_2^4", "GL_2^4"]  # no S_4
    assert sl.check_invariance(model, G, x).passed
    shared = Alibi(per_head=False).double().eval()
    assert any(f.kind == "permutation" for f in sl.symmetries(shared, x).factors if f.internal)


def test_alibi_head_swap_breaks_the_outputs():
    """Negative control (and brute force over the 4! head permutations): with distinct slopes
    only the identity keeps the outputs; with one shared slope every permutation does."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    import itertools

    for per_head, expected in ((True, 1), (False, 24)):
        model = Alibi(per_head=per_head).double().eval()
        sd, ref = dict(model.state_dict()), model(x)
        kept = 0
        for perm in itertools.permutations(range(4)):
            rows = torch.tensor([2 * p + i for p in perm for i in range(2)])
            moved = dict(sd)
            for m in "qkv":
                moved[f"{m}.weight"], moved[f"{m}.bias"] = (
                    sd[f"{m}.weight"][rows],
                    sd[f"{m}.bias"][rows],
                )
            moved["o.weight"] = sd["o.weight"][:, rows]
            out = torch.func.functional_call(model, moved, (x,))
            kept += bool(torch.allclose(out, ref, atol=1e-10))
        assert kept == expected


class Positions(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.tok, self.pos = nn.Embedding(11, 8), nn.Embedding(16, 8)
        self.table = nn.Parameter(torch.randn(1, 16, 8))
        pe = torch.zeros(16, 8)
        pos = torch.arange(16)[:, None]
        div = torch.exp(torch.arange(0, 8, 2) * (-math.log(10000.0) / 8))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("sinusoid", pe)
        self.register_buffer("position_ids", torch.arange(16)[None], persistent=False)
        self.fc, self.out = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, ids):
        T = ids.shape[1]
        h = self.tok(ids)
        if self.kind == "learned":  # an Embedding of positions made at run time
            h = h + self.pos(torch.arange(T, device=ids.device))
        elif self.kind == "buffer_ids":  # ... or read from a buffer (BERT)
            h = h + self.pos(self.position_ids[:, :T])
        elif self.kind == "parameter":  # a parameter added to the stream (ViT, GPT-1)
            h = h + self.table[:, :T]
        elif self.kind == "sinusoidal":  # a fixed table
            h = h + self.sinusoid[:T]
        else:  # ids and masks built in place (fixed data)
            pid = ids.clone()
            pid.copy_(torch.arange(T)[None])
            keep = ids == 0
            keep.masked_fill_(ids > 8, True)
            h = h + self.pos(pid) * (keep == 0)[..., None]
        return self.out(torch.relu(self.fc(h)))


@pytest.mark.parametrize("kind", ["learned", "buffer_ids", "parameter", "sinusoidal", "in_place"])
def test_position_embeddings_and_in_place_fixed_data(kind):
    torch.manual_seed(0)
    model = Positions(kind).double()
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, ids)
    kinds = [f.kind for f in G.factors]
    if kind != "in_place":  # the stream: any invertible map, position tables moving with it
        assert kinds == ["GL", "permutation", "scaling"]
    assert sl.check_invariance(model, G, ids).passed


def test_in_place_write_into_units_reads_as_its_out_of_place_op():
    """A write into a tensor with units that nothing else can see is its out-of-place op
    (here an opaque ``masked_fill`` with a mask from the input values); one read through
    another name is refused (tests/test_in_place.py)."""

    class Writes(nn.Module):
        def __init__(self, in_place: bool):
            super().__init__()
            self.in_place = in_place
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            h = self.a(x)
            if self.in_place:
                return self.b(h.masked_fill_(x > 0, 0.0))  # writes into a tensor with units
            return self.b(h.masked_fill(x > 0, 0.0))

    x = torch.randn(4, 3)
    model, twin = Writes(True), Writes(False)
    twin.load_state_dict(model.state_dict())
    G = sl.symmetries(model, x)
    assert [f.name for f in G.factors] == [f.name for f in sl.symmetries(twin, x).factors]
    assert sl.check_invariance(model, G, x).passed


def test_transformers_bloom_is_derived_and_sound():
    """BLOOM (ALiBi through baddbmm, fused per-head q/k/v rows): its attention is read as
    opaque (sound; the strided fused layout is not matched), the rest derived."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BloomConfig(vocab_size=11, hidden_size=8, n_layer=1, n_head=2)
    cfg._attn_implementation = "eager"

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = transformers.BloomModel(cfg)

        def forward(self, ids):
            return self.m(input_ids=ids, use_cache=False).last_hidden_state

    model = scramble(Wrap().double().eval())
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(model, ids)
    assert [f.short() for f in G.factors] == ["S_32"]
    assert sl.check_invariance(model, G, ids).passed


def test_conv1d_real_class():
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    torch.manual_seed(0)
    net = nn.Sequential(pytorch_utils.Conv1D(4, 3), nn.ReLU(), pytorch_utils.Conv1D(2, 4))
    net = scramble(net.double())
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    G = sl.symmetries(net, x)
    assert [f.short() for f in G.factors] == ["S_4", "R_{>0}^4"]
    assert sl.check_invariance(net, G, x).passed
