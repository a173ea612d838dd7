"""Writes into slices of a tensor the model computed (``h[:, :2].add_(1)``, ``attn[:, :, 1:,
1:] = attn[:, :, 1:, 1:] + rel``, ``out[:, i] = f(out[:, i - 1])``) are read as a torch.cat
of the tensor's pieces and the written value (symlab.frontend.scattered); writes whose
tensor is still read through an older view stay refused."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_contexts import kinds, prove
from torch import nn

import symlab as sl
from symlab.errors import UnsupportedOpError
from symlab.frontend.aliases import writes_in_place
from symlab.frontend.scattered import scatter_export

X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


class Written(nn.Module):
    """A Linear's output written into in one of several ways (``how``), then a tanh and a
    head; ``guarded``: an assert on a size sends it to torch.export (torch.fx hands such
    writes to torch.export anyway)."""

    def __init__(self, how: str, guarded: bool):
        super().__init__()
        self.how, self.guarded = how, guarded
        self.a, self.head = nn.Linear(3, 4), nn.Linear(4, 2)
        self.p = nn.Parameter(torch.randn(2)) if how == "parameter" else None
        self.q = nn.Parameter(torch.tensor(0.7)) if how == "parameter rows" else None

    def forward(self, x):
        if self.guarded:
            assert x.shape[-1] == 3
        h = self.a(x)
        extra = 0.0
        if self.how == "add_":  # units 0 and 1 shifted
            h[:, :2].add_(1.0)
        elif self.how == "setitem":  # units 1 to 3 doubled, read before the write
            h[:, 1:] = h[:, 1:] * 2
        elif self.how == "zero":  # unit 0 constant: it no longer moves with a's unit 0
            h[:, 0] = 0
        elif self.how == "rows":  # rows (not units) written: every unit keeps its symmetries
            h[1:3] = torch.tanh(h[1:3])
        elif self.how == "zero rows":  # a zero piece moves with any map of the units
            h[1:3] = 0.0
        elif self.how == "fill rows":  # a constant piece c: permutations only
            h[1:3] = 2.0
        elif self.how == "parameter rows":  # a 0-dim parameter written over two rows
            h[1:3] = self.q
        elif self.how == "parameter":  # units 2 and 3 become a parameter, broadcast over rows
            h[:, 2:] = self.p
        elif self.how == "result read":  # the write's own result read afterwards
            y = h[:, 2:].mul_(3.0)
            extra = y.sum(-1, keepdim=True)
        elif self.how == "whole":  # a slice of every unit: torch.export's alias of h
            y = h[:, 0:4].mul_(3.0)
            extra = y.sum(-1, keepdim=True)
        elif self.how == "picked rows":  # a symbolic number of rows, the units cut
            h = self.a(x[x[:, 0] >= x[:, 0].median()])
            h[:, 1:].mul_(2.0)
            return self.head(torch.tanh(h)).sum(0)
        return self.head(torch.tanh(h)) + extra


#: the group of each; units of ``a`` cut by a write lose the maps a slice of a non-fresh
#: space cannot follow (symlab.symmetry.layout_rules: split_part), never gain any
CASES = {
    "add_": ["S_2", "S_2", "{±1}^2"],
    "setitem": ["S_3", "{±1}^3", "S_1", "{±1}^1"],
    "zero": [],  # the units left are not all of a's: a's space stays fixed
    "rows": ["S_4", "{±1}^4"],  # tanh is odd
    "zero rows": ["S_4", "{±1}^4"],
    "fill rows": ["S_4"],
    "parameter rows": ["S_4"],
    "parameter": ["S_2", "{±1}^2"],
    "result read": [],
    "whole": [],  # (a sum over the units is opaque, as in "result read")
    "picked rows": ["S_3", "{±1}^3", "S_1", "{±1}^1"],
}


@pytest.mark.parametrize("guarded", [False, True])
@pytest.mark.parametrize("how", CASES)
def test_writes_into_slices_give_the_proven_group(how, guarded):
    torch.manual_seed(0)
    model = Written(how, guarded).double().eval()
    G = prove(model, X)
    assert G.graph.frontend == "torch.export"
    assert kinds(G) == CASES[how]


class Recurrence(nn.Module):
    """``out[:, i] = tanh(out[:, i - 1]) + out[:, i]`` over the steps of a sequence, the
    units on the last axis: every write cuts the step axis, so the units keep S_n and signs
    (tanh is odd, the Linears have no bias to break them)."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)

    def forward(self, x):
        h = self.a(x)
        for i in range(1, h.shape[1]):
            h[:, i] = torch.tanh(h[:, i - 1]) + h[:, i]
        return self.head(h)


def test_a_recurrence_written_step_by_step():
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G = prove(Recurrence().double().eval(), x)
    assert kinds(G) == ["S_4", "{±1}^4"]


class Scores(nn.Module):
    """Two-head self-attention whose scores get a learned bias on every pair of patches but
    not on the class token (MViTv2's ``attn[:, :, 1:, 1:] += rel``); ``k = 0`` writes the
    whole tensor (MViTv2 without a class token). The twin adds the bias padded with zeros,
    out of place: the same function."""

    def __init__(self, k: int, twin: bool, tokens: int = 4, dim: int = 4):
        super().__init__()
        self.k, self.twin = k, twin
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.rel = nn.Parameter(torch.randn(tokens - k, tokens - k))
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, 2, d // 2).permute(2, 0, 3, 1, 4)
        attn = q @ k.transpose(-2, -1)
        if self.twin:
            attn = attn + nn.functional.pad(self.rel, (self.k, 0, self.k, 0))
        else:
            attn[:, :, self.k :, self.k :] = attn[:, :, self.k :, self.k :] + self.rel
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.head(torch.relu(self.proj(y)))


@pytest.mark.parametrize("k", [0, 1])
def test_attention_scores_written_in_part(k):
    x = torch.randn(2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    model, twin = Scores(k, False).double().eval(), Scores(k, True).double().eval()
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x), twin(x))
    G, G_twin = sl.symmetries(model, x), sl.symmetries(twin, x)
    assert sl.check_invariance(model, G, x, samples=4).passed
    assert kinds(G) == kinds(G_twin) and G.dimension == G_twin.dimension
    assert G.order > 1


class Stale(nn.Module):
    """A view taken before the write and read after it: not read (fail closed)."""

    def __init__(self, guarded: bool):
        super().__init__()
        self.guarded = guarded
        self.a, self.head = nn.Linear(3, 4), nn.Linear(6, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[-1] == 3
        h = self.a(x)
        tail = h[:, 2:]  # a view: it sees the write below only where they overlap
        h[:, 1:3] = 0.0
        return self.head(torch.cat([h, tail], -1))


@pytest.mark.parametrize("guarded", [False, True])
def test_a_view_taken_before_the_write_and_read_after_it_is_refused(guarded):
    with pytest.raises(UnsupportedOpError, match="in-place"):
        sl.symmetries(Stale(guarded).double().eval(), X)


class Pow(nn.Module):
    """``pow_`` has no out-of-place op of the same overload and signature (``pow.Scalar``
    takes the exponent as the tensor): not read, refused by name."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        assert x.shape[-1] == 3
        h = self.a(x)
        h[:, :2].pow_(2)
        return self.head(h)


def test_an_in_place_op_without_its_out_of_place_twin_is_refused():
    with pytest.raises(UnsupportedOpError, match="in-place"):
        sl.symmetries(Pow().double().eval(), X)


class SelfRead(nn.Module):
    """An in-place write reading another view of its own tensor (``s.add_(s.mT)``): torch
    reads entries it has already written, so it is not the out-of-place op."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x):
        assert x.shape[-1] == 3
        s = self.a(x)
        s.add_(s.mT)
        return self.head(s)


def test_a_write_reading_a_view_of_its_own_tensor_is_refused():
    x = torch.randn(3, 3, dtype=torch.float64)
    with pytest.raises(UnsupportedOpError, match="in-place"):
        sl.symmetries(SelfRead().double().eval(), x)


# -- the rewrite computes what torch computes --------------------------------------------------


@st.composite
def _regions(draw):
    """A shape of 1–4 dimensions and an index into it: per dimension all of it, a slice
    (negative bounds and steps too) or an integer."""
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    index = []
    for size in shape:
        kind = draw(st.sampled_from(["all", "slice", "int"]))
        if kind == "int":
            index.append(draw(st.integers(-size, size - 1)))
        elif kind == "slice":
            lo = draw(st.integers(-size, size))
            hi = draw(st.integers(-size, size) | st.none())
            index.append(slice(lo, hi, draw(st.sampled_from([None, 1, 2, 3]))))
        else:
            index.append(slice(None))
    return tuple(shape), tuple(index)


class _Write(nn.Module):
    def __init__(self, index, how):
        super().__init__()
        self.index, self.how = index, how

    def forward(self, x, v):
        h = x * 2.0  # a tensor the graph computes
        region = h[self.index]
        if self.how == "copy":
            h[self.index] = v.reshape(region.shape) if v.numel() == region.numel() else v[0]
        elif self.how == "add_":
            region.add_(v.reshape(region.shape) if v.numel() == region.numel() else v[0])
        elif self.how == "fill_":
            region.fill_(3.5)
        else:
            region.zero_()
        return h * 1.0, h.sum()


@settings(deadline=None, max_examples=max(60, settings.default.max_examples))
@given(region=_regions(), how=st.sampled_from(["copy", "add_", "fill_", "zero_"]))
def test_the_rewrite_computes_what_torch_computes(region, how):
    shape, index = region
    changed, got, want = _rewritten(shape, index, how)
    whole = torch.empty(shape)[index].shape == shape and not any(isinstance(i, int) for i in index)
    assert changed or whole
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _rewritten(shape, index, how):
    """Whether scatter_export rewrote the write, and the rewritten graph's outputs beside the
    model's own."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    v = torch.randn(x[index].numel() or 1, generator=g)
    model = _Write(index, how)
    ep = torch.export.export(model, (x, v), strict=False)
    changed = scatter_export(ep.graph)
    if changed:  # no write left
        assert not any(writes_in_place(n) for n in ep.graph.nodes if n.op == "call_function")
    ep.graph_module.recompile()
    return changed, ep.module()(x, v), model(x.clone(), v)


@pytest.mark.parametrize("how", ["copy", "add_", "fill_"])
def test_control_a_misplaced_piece_is_caught(how, monkeypatch):
    """Negative control of the property: a rewrite that puts the region after the rest of the
    tensor (the pieces in the wrong order) computes something else, and the comparison says
    so."""
    import symlab.frontend.scattered as scattered

    right = scattered._pieces

    def wrong(graph, write, t, value, cuts):
        node = right(graph, write, t, value, cuts)
        parts, dim = node.args
        node.args = (list(reversed(parts)), dim)
        return node

    monkeypatch.setattr(scattered, "_pieces", wrong)
    changed, got, want = _rewritten((3, 4), (slice(None), slice(0, 2)), how)
    assert changed
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)


class Interleaved(nn.Module):
    """Qwen3.5's multimodal rotary frequencies: a row of a tensor the model made, written
    with a step from its other rows (read after the first write: apart from it), then used
    as fixed data (``strided``), or the same writes into a tensor with units."""

    def __init__(self, units: bool, step: int = 3):
        super().__init__()
        self.units, self.step = units, step
        self.a, self.head = nn.Linear(3, 6), nn.Linear(6, 2)
        self.register_buffer("inv_freq", torch.rand(6), persistent=False)

    def forward(self, x):
        assert x.shape[-1] == 3
        h = self.a(x)
        src = h.unsqueeze(0).expand(3, -1, -1) * 1.0 if self.units else None
        if src is None:
            src = torch.arange(3.0)[:, None, None] * self.inv_freq * x[:, :1].abs()
        freqs = src * 2.0
        freqs_t = freqs[0]
        for dim, offset in enumerate((1, 2), start=1):
            cut = slice(offset, 6, 3) if self.step == 3 else slice(2 * offset, 2 * offset + 2)
            freqs_t[..., cut] = freqs[dim, ..., cut]
        if self.units:
            return self.head(torch.tanh(freqs_t))
        return self.head(torch.tanh(h) * freqs_t.cos())


def test_strided_writes_into_fixed_data_are_read():
    model = Interleaved(units=False).double().eval()
    G = prove(model, X)
    assert G.graph.frontend == "torch.export"
    assert G.order == 1  # each unit has its own frequencies: no permutation survives the mask


def test_writes_into_a_row_of_a_tensor_from_its_other_rows():
    """The row ``freqs[0]`` is the tensor written into (the model reads it, not ``freqs``,
    afterwards); ``freqs[2]`` is read after the first write, which cannot change it."""
    torch.manual_seed(0)
    model = Interleaved(units=True, step=1).double().eval()
    G = prove(model, X)
    assert G.graph.frontend == "torch.export"
    # the units are cut into parts of a tensor that is no space of its own: fixed (sound)
    assert kinds(G) == []
    assert "concat" in [n.op for n in G.graph.nodes()]


def test_strided_writes_into_units_are_refused_by_name():
    with pytest.raises(UnsupportedOpError, match="strided slice"):
        sl.symmetries(Interleaved(units=True).double().eval(), X)


class Cast(nn.Module):
    """``.to(dtype, memory_format=...)``, which torch.export records with the memory format
    as a positional argument ``Tensor.to`` does not take."""

    def __init__(self):
        super().__init__()
        self.a, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        assert x.shape[-1] == 3
        h = torch.tanh(self.a(x)).transpose(0, 1)
        h = h.to(torch.float64, memory_format=torch.contiguous_format).transpose(0, 1)
        return self.head(h)


def test_a_cast_with_a_memory_format_is_read():
    """It was handed to ``Tensor.to`` positionally, which failed the shape pass (and was
    reported as an input that does not run through the model). A cast is read as opaque."""
    G = prove(Cast().double().eval(), X)
    assert G.graph.frontend == "torch.export"
    assert "opaque" in [n.op for n in G.graph.nodes()]
