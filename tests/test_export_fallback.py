"""The torch.export fallback: models torch.fx cannot trace (Python code on sizes) are read through
torch.export and give the same graph and group as their torch.fx-traceable twins."""

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import symlab as sl
from symlab.errors import TraceError, UnsupportedOpError


def _trace_both(make, x):
    """Trace the guarded model (torch.fx fails on it) and its unguarded twin (same weights)."""
    torch.manual_seed(0)
    model = make(guarded=True).double().eval()
    twin = make(guarded=False).double().eval()
    twin.load_state_dict(model.state_dict())
    g, g_twin = sl.trace(model, x), sl.trace(twin, x)
    assert (g.frontend, g_twin.frontend) == ("torch.export", "torch.fx")
    return model, twin, g, g_twin


def _same_graph(g, g_twin, constants=0):
    """Module nodes keep their names; function nodes are compared by op (fx names them apart).
    A tensor constant torch.fx reads as a module attribute is an ``input`` node of its own."""
    named = [(n.name, n.op, n.width) for n in g.nodes() if not n.name.startswith("@")]
    assert named == [(n.name, n.op, n.width) for n in g_twin.nodes() if not n.name.startswith("@")]
    ops = Counter(n.op for n in g.nodes())
    assert ops - Counter({"input": constants}) == Counter(n.op for n in g_twin.nodes())


def _same_group(model, twin, x):
    G, G_twin = sl.symmetries(model, x), sl.symmetries(twin, x)
    assert [(f.name, f.kind) for f in G.factors] == [(f.name, f.kind) for f in G_twin.factors]
    assert G.order == G_twin.order and G.dimension == G_twin.dimension
    rep = sl.check_invariance(model, G, x)
    assert rep.passed, rep
    return G


# -- (a) a nanoGPT-style GPT ----------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.c_proj = nn.Linear(d, d)
        self.n_head = heads

    def forward(self, x):
        B, T, C = x.size()
        q = self.q(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = self.k(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = self.v(x).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), CausalSelfAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, guarded, vocab=11, block_size=6, d=8, heads=2, layers=2):
        super().__init__()
        self.guarded, self.block_size = guarded, block_size
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block_size, d)
        self.h = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f, self.lm_head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        _, t = idx.size()
        if self.guarded:
            assert t <= self.block_size, "sequence too long"
        pos = torch.arange(0, idx.shape[1], dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def test_gpt_with_an_assert_on_the_length():
    idx = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(0))
    model, twin, g, g_twin = _trace_both(GPT, idx)
    _same_graph(g, g_twin)
    attn = [n for n in g.nodes() if n.op == "attention_linear"]
    assert [n.name for n in attn] == ["h.0.attn", "h.1.attn"]  # the hand-written attention
    G = _same_group(model, twin, idx)
    assert any(f.name.startswith("P[h.0.mlp.0") for f in G.factors)  # MLP units permute
    assert G.order > 1


# -- (b) a CNN that pools only large images ---------------------------------------------------


class BranchCNN(nn.Module):
    def __init__(self, guarded):
        super().__init__()
        self.guarded = guarded
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2, self.gn = nn.Conv2d(4, 6, 3, padding=1), nn.GroupNorm(2, 6)
        self.gap, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(6, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if not self.guarded or x.shape[-1] > 8:
            x = self.pool(x)
        x = torch.tanh(self.gn(self.conv2(x)))
        return self.fc(self.gap(x).view(x.shape[0], -1))


def test_cnn_with_a_branch_on_the_image_size():
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    model, twin, g, g_twin = _trace_both(BranchCNN, x)
    model.train()  # give BatchNorm running statistics of its own
    with torch.no_grad():
        model(x)
    model.eval()
    twin.load_state_dict(model.state_dict())
    _same_graph(g, g_twin)
    G = _same_group(model, twin, x)
    kinds = {f.name: f.kind for f in G.factors}
    assert kinds["P[conv1]"] == kinds["P[conv2]"] == "permutation"
    # conv1: 4! permutations and 2^4 signs (ReLU after BatchNorm); conv2 under GroupNorm(2, 6):
    # permutations within the two groups of 3 and a swap of the groups, and 2^6 signs (tanh)
    assert G.order == math.factorial(4) * 2**4 * (math.factorial(3) ** 2 * 2) * 2**6
    assert not model.training  # the fallback restored the mode it found


def test_fallback_restores_train_mode_per_module():
    model = BranchCNN(guarded=True)
    model.bn1.eval()  # mixed modes are kept as they were
    sl.trace(model, torch.randn(2, 3, 16, 16))
    assert model.training and model.conv1.training and not model.bn1.training


# -- (c) an MLP scaled by the square root of its width ----------------------------------------


class ScaledMLP(nn.Module):
    def __init__(self, guarded):
        super().__init__()
        self.guarded = guarded
        self.fc1, self.fc2, self.out = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        # torch.fx wraps math.sqrt(x.size(-1)) but cannot turn a traced size into a float
        width = float(x.size(-1)) if self.guarded else 5.0
        h = torch.tanh(self.fc1(x) / math.sqrt(width))
        h = F.relu(self.fc2(h)) * (1.0 / math.sqrt(float(h.size(-1)) if self.guarded else 8.0))
        return self.out(h)


def test_mlp_scaled_by_sqrt_of_a_size():
    x = torch.randn(6, 5, dtype=torch.float64)
    model, twin, g, g_twin = _trace_both(ScaledMLP, x)
    _same_graph(g, g_twin)
    G = _same_group(model, twin, x)
    assert {f.name: f.kind for f in G.factors} == {
        "P[fc1]": "permutation", "sign[fc1]": "sign",
        "P[fc2]": "permutation", "scale[fc2]": "scaling",
    }  # fmt: skip


# -- torch modules with several inputs and outputs, user leaves -------------------------------


class Mixed(nn.Module):
    """nn.MultiheadAttention (cross-attention: query and key/value differ; a constant mask), an
    encoder layer, a learned positional parameter, torch.cat, and a user leaf module."""

    def __init__(self, guarded):
        super().__init__()
        self.guarded = guarded
        self.emb = nn.Linear(4, 8)
        self.pos = nn.Parameter(torch.randn(1, 5, 8))
        self.ctx = nn.Linear(4, 8)
        self.cross = nn.MultiheadAttention(8, 2, batch_first=True)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.act = MyTanh()
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[1] == 5
        h = self.emb(x) + self.pos
        c = self.ctx(x)
        causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)  # a constant in both
        a, _ = self.cross(h, c, c, attn_mask=causal, need_weights=False)
        h = self.enc(h + a)
        h = torch.cat([h, self.act(h)], dim=-1)
        return self.head(h.mean(dim=1))


class MyTanh(nn.Module):
    def forward(self, x):
        return torch.tanh(x)


def test_torch_modules_and_user_leaves():
    from symlab.frontend import declare_leaf
    from symlab.frontend.modules import _MODULE_OPS, register_module_op

    register_module_op(MyTanh, lambda m, w: ("activation", w, {"fn": "tanh"}))
    declare_leaf(MyTanh)
    try:
        x = torch.randn(2, 5, 4, dtype=torch.float64)
        model, twin, g, g_twin = _trace_both(Mixed, x)
        _same_graph(g, g_twin, constants=1)  # the mask: a lifted constant of the exported graph
        assert g.node("cross").attrs["qkv"] == g_twin.node("cross").attrs["qkv"] == (0, 1, 1)
        assert g.node("act").op == "activation" and g.node("act").attrs["fn"] == "tanh"
        G = _same_group(model, twin, x)
        assert G.order > 1
    finally:
        _MODULE_OPS.pop(MyTanh)
        from symlab.frontend import tracer

        tracer._EXTRA_LEAVES.discard(MyTanh)


# -- refusals ---------------------------------------------------------------------------------


def test_value_dependent_branch_fails_in_both_front_ends():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            if x.sum() > 0:
                return self.a(x)
            return x

    with pytest.raises(TraceError, match=r"torch\.fx: .*torch\.export: .*control flow.*cond"):
        sl.symmetries(Branchy(), torch.randn(2, 3))


def test_a_size_that_depends_on_the_data():
    """Boolean-mask indexing: torch.export keeps the row count symbolic. Rows picked by a mask
    of the input are read (the same group as without the selection); arithmetic on their
    number is a named refusal, not a failure inside symlab's reader (it once was "unhashable
    type: non-nested SymInt")."""

    class Selecting(nn.Module):
        def __init__(self, select: str):
            super().__init__()
            self.a, self.b, self.select = nn.Linear(3, 4), nn.Linear(4, 2), select

        def forward(self, x):
            assert x.shape[-1] == 3
            h = torch.relu(self.a(x))
            if self.select:
                h = h[x[:, 0] > 0]
            if self.select == "count":
                h = h / h.shape[0]
            return self.b(h)

    x = torch.randn(6, 3)
    with pytest.raises(UnsupportedOpError, match="size that depends on the values"):
        sl.symmetries(Selecting(select="count"), x)
    control = {f.name for f in sl.symmetries(Selecting(select=""), x).factors}
    assert control == {"P[a]", "scale[a]"}
    net = Selecting(select="rows")
    assert sl.trace(net, x).frontend == "torch.export"
    G = sl.symmetries(net, x)
    assert {f.name for f in G.factors} == control
    assert sl.check_invariance(net, G, x).passed


def test_unmapped_aten_op_is_refused_with_its_name():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            assert x.shape[-1] == 3
            return self.b(torch.asinh(self.a(x)))

    with pytest.raises(UnsupportedOpError, match=r"torch\.ops\.aten\.asinh\.default.*rule"):
        sl.symmetries(Odd(), torch.randn(2, 3))


def test_an_aten_op_registered_with_register_function_is_traced():
    from symlab.frontend.functions import USER_FUNCS, register_function

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            assert x.shape[-1] == 3
            return self.b(torch.asinh(self.a(x)))

    register_function(torch.ops.aten.asinh.default, "activation", fn="tanh")  # odd, elementwise
    try:
        model, x = Odd().double(), torch.randn(5, 3, dtype=torch.float64)
        G = sl.symmetries(model, x)
        assert {f.name: f.kind for f in G.factors} == {"P[a]": "permutation", "sign[a]": "sign"}
        assert sl.check_invariance(model, G, x).passed
    finally:
        USER_FUNCS.pop(torch.ops.aten.asinh.default)


def test_in_place_write_through_a_view_of_the_output():
    """The write makes the output another node (a cat of pieces): the output is read by
    position, not by the name torch.export gave it."""

    class Aliased(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)

        def forward(self, x):
            assert x.shape[-1] == 3
            h = self.a(x)
            h[:, :2].add_(1.0)  # writes into h through a view
            return h

    model, x = Aliased(), torch.randn(2, 3)
    G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.export"
    assert [n.op for n in G.graph.nodes()][-2:] == ["concat", "output"]
    assert sl.check_invariance(model, G, x).passed


class _Autocast(nn.Module):
    """A forward with a ``with torch.autocast(...)`` block (``block``: its ``enabled``, or
    None for no block), which torch.export keeps as the higher-order op wrap_with_autocast."""

    def __init__(self, block: bool | None):
        super().__init__()
        self.a, self.b, self.block = nn.Linear(3, 4), nn.Linear(4, 2), block

    def forward(self, x):
        assert x.shape[-1] == 3  # torch.fx cannot trace this: torch.export reads it
        h = torch.relu(self.a(x))
        if self.block is None:
            return self.b(h * 2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.block):
            h = self.b(h * 2)
        return h.to(x.dtype)


def test_an_autocast_off_block_is_read_as_its_ops():
    """``enabled=False`` while autocast is off changes nothing: its ops are read as if the
    block were not there (timm's efficientvit computes its attention in such a block)."""
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.manual_seed(0)
    model = _Autocast(block=False).double().eval()
    twin = _Autocast(block=None).double().eval()
    twin.load_state_dict(model.state_dict())
    G, G_twin = sl.symmetries(model, x), sl.symmetries(twin, x)
    assert sl.trace(model, x).frontend == "torch.export"
    assert str(G) == str(G_twin)
    assert {f.name for f in G.factors} == {"P[a]", "scale[a]"}
    assert sl.check_invariance(model, G, x).passed


def test_an_autocast_off_block_is_refused_without_the_inlining(monkeypatch):
    """Negative control: it is the inlining that reads the block."""
    import symlab.frontend.export as export

    monkeypatch.setattr(export, "_inline_autocast_off", lambda gm: None)
    with pytest.raises(UnsupportedOpError, match="wrap_with_autocast"):
        sl.symmetries(_Autocast(block=False), torch.randn(5, 3))


def test_an_autocast_block_is_refused_with_what_it_is():
    """A block that turns autocast on (the ops inside run in bfloat16), or any block while
    autocast is already on: a named error saying what it is, not an internal node's name."""
    x = torch.randn(5, 3)
    with pytest.raises(UnsupportedOpError, match=r"torch\.autocast.*wrap_with_autocast.*fx"):
        sl.symmetries(_Autocast(block=True), x)
    with (
        torch.autocast("cpu", dtype=torch.bfloat16),
        pytest.raises((UnsupportedOpError, TraceError)),
    ):
        sl.trace(_Autocast(block=False), x)  # not inlined: outside, autocast is on


@pytest.mark.parametrize("name", ["resnet20", "hand_transformer"])
def test_zoo_models_read_through_export_give_the_fx_group(name, monkeypatch):
    """Every op of these models goes through the aten table and back: same graph, same group."""
    from symlab.frontend import tracer as tracer_mod
    from symlab.nn.zoo import registry

    kw = registry.tiny(name)
    model, x = registry.get(name, **kw).double().eval(), registry.example_input(name, **kw)
    x = x.double() if x.is_floating_point() else x
    g_fx, G_fx = sl.trace(model, x), sl.symmetries(model, x)

    def refuse(self, *args, **kwargs):
        raise RuntimeError("torch.fx refused (forced by the test)")

    monkeypatch.setattr(tracer_mod.Tracer, "trace", refuse)
    g = sl.trace(model, x)
    assert (g.frontend, g_fx.frontend) == ("torch.export", "torch.fx")
    _same_graph(g, g_fx)
    G = sl.symmetries(model, x)
    assert [(f.name, f.kind) for f in G.factors] == [(f.name, f.kind) for f in G_fx.factors]
    assert G.order == G_fx.order and G.dimension == G_fx.dimension
    assert sl.check_invariance(model, G, x).passed


def test_in_place_ops_read_out_of_place():
    class InPlace(nn.Module):
        def __init__(self, guarded):
            super().__init__()
            self.guarded = guarded
            self.a, self.act, self.b = nn.Linear(3, 5), nn.ReLU(inplace=True), nn.Linear(5, 2)

        def forward(self, x):
            if self.guarded:
                assert x.shape[-1] == 3
            h = self.act(self.a(x))
            h *= 2.0
            return self.b(F.relu(h, inplace=True))

    x = torch.randn(4, 3, dtype=torch.float64)
    model, twin, g, g_twin = _trace_both(InPlace, x)
    _same_graph(g, g_twin)
    G = _same_group(model, twin, x)
    assert {f.name: f.kind for f in G.factors} == {"P[a]": "permutation", "scale[a]": "scaling"}


class _CacheConcat(nn.Module):
    """A key/value cache's first update, as transformers' DynamicCache writes it: the new keys
    concatenated after an empty tensor (``torch.cat([torch.tensor([]), k], -2)``)."""

    def __init__(self, guarded: bool, past: int = 0):
        super().__init__()
        self.guarded, self.past = guarded, past
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[-1] == 3
        k = self.a(x)
        if self.past:
            cached = torch.ones(self.past, 4, dtype=k.dtype)
        else:
            cached = torch.tensor([], dtype=k.dtype)
        k = torch.cat([cached, k], -2)
        return self.b(torch.relu(k))


def test_an_empty_cache_concatenation_is_its_new_part():
    """``cat([empty, k])`` is ``k``: the twin without the cache's concatenation has the same
    group; a cache that holds rows is concatenated as it is (its rows are not permuted)."""
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.manual_seed(0)
    model = _CacheConcat(guarded=True).double().eval()
    G = sl.symmetries(model, x)
    assert G.graph.frontend == "torch.export"
    assert {f.name: f.kind for f in G.factors} == {"P[a]": "permutation", "scale[a]": "scaling"}
    assert sl.check_invariance(model, G, x).passed
    held = _CacheConcat(guarded=True, past=2).double().eval()
    G_held = sl.symmetries(held, x)
    assert "P[a]" not in {f.name for f in G_held.factors}  # its fixed rows of ones stay
    assert sl.check_invariance(held, G_held, x).passed


class _FunctionalConv(nn.Module):
    """A convolution written as a call on the module's own parameters (``F.conv2d``), which
    torch.export keeps as ``aten.conv2d``."""

    def __init__(self, guarded: bool):
        super().__init__()
        self.guarded = guarded
        self.weight = nn.Parameter(torch.randn(3, 2, 3, 3) / 4)
        self.bias = nn.Parameter(torch.randn(3))
        self.head = nn.Linear(3 * 16, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[1] == 2
        h = F.conv2d(x, self.weight, self.bias, 1, 1)
        return self.head(torch.relu(h).flatten(1))


def test_a_functional_convolution_reads_as_through_torch_fx():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    model, twin, g, g_twin = _trace_both(_FunctionalConv, x)
    _same_graph(g, g_twin)
    G = _same_group(model, twin, x)
    assert {f.kind for f in G.factors} == {"permutation", "scaling"}


class _SplitCumsum(nn.Module):
    """Ops read as opaque by both front-ends: ``torch.tensor_split`` at indices and
    ``torch.cumsum`` over tokens (Qwen3.5's mixer writes both)."""

    def __init__(self, guarded: bool):
        super().__init__()
        self.guarded = guarded
        self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[-1] == 3
        p, q, r = torch.tensor_split(self.a(x), [2, 4], dim=-1)
        side = torch.cumsum(p * q + r, dim=0)  # opaque: a's units stay where they are
        return self.c(torch.relu(self.b(x))) + side


def test_tensor_split_and_cumsum_read_as_through_torch_fx():
    x = torch.randn(5, 3, dtype=torch.float64)
    model, twin, g, g_twin = _trace_both(_SplitCumsum, x)
    _same_graph(g, g_twin)
    G = _same_group(model, twin, x)
    assert {f.name for f in G.factors} == {"P[b]", "scale[b]"}  # b's units, not a's
