"""New tensors written part by part into their slices (``k = x.new_empty(...)``,
``k[..., :d].copy_(a)``, ``k[..., d:] = b``) are read as the ``torch.cat`` of the parts when the
writes cover them exactly (symlab.frontend.assembled), and refused otherwise."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_contexts import kinds, prove
from torch import nn

import symlab as sl
from symlab.errors import UnsupportedOpError

X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


class Parts(nn.Module):
    """Parts of widths ``widths`` along the last axis of a [rows, heads, width] tensor;
    the part named in ``shared`` has one head, broadcast over the others (DeepSeek-V3's
    ``k_rot``). ``style`` says how the tensor is assembled: ``cat`` (the twin torch.fx
    reads), or a factory and a way of writing."""

    def __init__(self, widths, style, order, shared=None, heads=2, negative=False):
        super().__init__()
        self.widths, self.style, self.order, self.shared, self.heads = (
            widths, style, order, shared, heads,
        )  # fmt: skip
        self.negative = negative  # slices counted from the end: out[..., -3:-1]
        self.parts = nn.ModuleList(
            nn.Linear(3, w * (1 if i == shared else heads)) for i, w in enumerate(widths)
        )
        self.head = nn.Linear(sum(widths) * heads, 2)

    def part(self, i, x):
        h = self.parts[i](x)
        if i == self.shared:
            return h.reshape(x.shape[0], 1, -1)
        return h.reshape(x.shape[0], self.heads, -1)

    def forward(self, x):
        n, total = x.shape[0], sum(self.widths)
        if self.style == "cat":
            parts = [self.part(i, x).expand(n, self.heads, -1) for i in range(len(self.widths))]
            out = torch.cat(parts, -1)
        else:
            fx_too = self.style.startswith("fx:")
            if not fx_too:
                assert x.shape[-1] == 3  # torch.fx stops here: read through torch.export
            factory, write = self.style.removeprefix("fx:").split("+")
            if factory == "new_empty":
                out = x.new_empty(n, self.heads, total)
            elif factory == "empty":
                out = torch.empty(n, self.heads, total, dtype=x.dtype)
            else:
                out = x.new_zeros(n, self.heads, total)
            starts = [sum(self.widths[:i]) for i in range(len(self.widths))]
            for i in self.order:
                lo, hi = starts[i], starts[i] + self.widths[i]
                if self.negative:
                    lo, hi = lo - total, (hi - total) or None
                if write == "copy_":
                    out[..., lo:hi].copy_(self.part(i, x))
                else:
                    out[:, :, lo:hi] = self.part(i, x)
        return self.head(torch.tanh(out).flatten(1))


def _twins(widths, style, order, shared=None, negative=False):
    torch.manual_seed(0)
    model = Parts(widths, style, order, shared, negative=negative).double().eval()
    twin = Parts(widths, "cat", order, shared).double().eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


def _factors(G):
    """The factors by what they are and which parameter axes they move (a factor is named
    after the first layer it meets, which the order of the writes may change)."""
    return sorted((f.kind, f.order, tuple(sorted(f.axes))) for f in G.factors)


@pytest.mark.parametrize(
    "style",
    [
        "new_empty+copy_", "empty+setitem", "new_zeros+setitem", "new_empty+setitem",
        "fx:new_empty+copy_", "fx:new_zeros+copy_", "fx:new_empty+setitem",
    ],
)  # fmt: skip
@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
@pytest.mark.parametrize("shared", [None, 2])
def test_parts_written_into_slices_read_as_their_cat(style, order, shared):
    model, twin = _twins([2, 3, 1], style, order, shared)
    torch.testing.assert_close(model(X), twin(X), rtol=0, atol=0)  # the same function
    G, G_twin = sl.symmetries(model, X), sl.symmetries(twin, X)
    # torch.fx reads t[i].copy_(v) itself; symlab's tracer cannot record t[i] = v
    fx_too = style.startswith("fx:") and style.endswith("copy_")
    assert G.graph.frontend == ("torch.fx" if fx_too else "torch.export")
    assert G_twin.graph.frontend == "torch.fx"
    assert _factors(G) == _factors(G_twin)
    assert G.order == G_twin.order and G.dimension == G_twin.dimension
    assert sl.check_invariance(model, G, X).passed


class Columns(nn.Module):
    """``out[:, i] = f_i(x)`` for each column (an integer index: the part lacks that axis),
    then one head on every column; the twin stacks the parts with ``torch.cat``."""

    def __init__(self, guarded, k=3):
        super().__init__()
        self.guarded = guarded
        self.fs = nn.ModuleList(nn.Linear(3, 4) for _ in range(k))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        if self.guarded:
            assert x.shape[-1] == 3
            out = x.new_zeros(x.shape[0], len(self.fs), 4)
            for i, f in enumerate(self.fs):
                out[:, i] = f(x)
        else:
            out = torch.cat([f(x).unsqueeze(1) for f in self.fs], 1)
        return self.head(torch.relu(out)).sum(1)


def test_columns_written_one_by_one_read_as_stacked():
    torch.manual_seed(0)
    model, twin = Columns(True).double().eval(), Columns(False).double().eval()
    twin.load_state_dict(model.state_dict())
    G, G_twin = sl.symmetries(model, X), sl.symmetries(twin, X)
    assert (G.graph.frontend, G_twin.graph.frontend) == ("torch.export", "torch.fx")
    assert _factors(G) == _factors(G_twin)
    # the head reads every column: one permutation (and scaling) of the units of all three
    (perm,) = [f for f in G.factors if f.kind == "permutation"]
    assert {name for name, _ in perm.axes} >= {f"fs.{i}.weight" for i in range(3)}
    assert sl.check_invariance(model, G, X).passed


class Unlike(nn.Module):
    """Writes that do not assemble the tensor, as ``out[i] = v`` (read through torch.export)
    or ``out[i].copy_(v)`` (torch.fx)."""

    def __init__(self, how, fx):
        super().__init__()
        self.how, self.fx = how, fx
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)
        self.head = nn.Linear(6, 2)

    def put(self, out, index, value):
        if self.fx:
            out[index].copy_(value)
        else:
            out[index] = value

    def forward(self, x):
        if not self.fx:
            assert x.shape[-1] == 3
        shape = (x.shape[0], 6)
        out = x.new_empty(shape) if getattr(self, "empty", False) else x.new_zeros(shape)
        a, b = self.a(x), self.b(x)
        put, all_ = self.put, slice(None)
        if self.how == "gap":  # columns 4 and 5 keep their zeros
            put(out, (all_, slice(0, 4)), a)
        elif self.how == "overlap":  # the second write replaces part of the first
            put(out, (all_, slice(0, 4)), a)
            put(out, (all_, slice(2, 6)), b)
        elif self.how == "read between":
            put(out, (all_, slice(0, 4)), a)
            put(out, (all_, slice(4, 6)), b[:, :2] * out.sum())  # reads the first write
        elif self.how == "changed between":  # the cat would read a after its change
            put(out, (all_, slice(0, 4)), a)
            a.mul_(2.0)
            put(out, (all_, slice(4, 6)), b[:, :2])
        elif self.how == "view changed between":  # b is new after the first write, but the
            put(out, (all_, slice(0, 2)), a[:, :2])  # second part is a view of it, changed
            put(out, (all_, slice(2, 4)), b[:, :2])  # before the last write
            b.mul_(2.0)
            put(out, (all_, slice(4, 6)), a[:, 2:])
        elif self.how == "two cuts":  # rows and columns: not one piece along one axis
            put(out, (slice(0, 2), slice(0, 4)), a[:2])
            put(out, (slice(2, None), slice(0, 4)), a[2:])
            put(out, (all_, slice(4, 6)), b[:, :2])
        elif self.how == "strided":
            put(out, (all_, slice(0, None, 2)), a[:, :3])
            put(out, (all_, slice(1, None, 2)), b[:, :3])
        return self.head(torch.tanh(out))


#: the group of each, read write by write (columns 0–3 of ``a``'s units reach the head unless
#: a later write replaced them or a read of the whole tensor mixed them)
HOW = {
    "gap": ["S_4", "{±1}^4"], "overlap": ["S_4", "{±1}^4"], "read between": [],
    "changed between": [], "view changed between": ["S_2", "{±1}^2"], "two cuts": [],
}  # fmt: skip


@pytest.mark.parametrize("fx", [False, True])
@pytest.mark.parametrize("how", HOW)
def test_writes_that_do_not_assemble_the_tensor_are_read_one_by_one(how, fx):
    """A zero tensor the writes do not tile is not one cat of the parts, but each write into a
    slice of it is the cat of its pieces and the written value (symlab.frontend.scattered),
    in turn: the group passes the proof on the real model and brute force finds nothing
    else (both front-ends: torch.fx hands such writes to torch.export)."""
    model = Unlike(how, fx).double().eval()
    G = prove(model, X)
    assert G.graph.frontend == "torch.export"
    assert kinds(G) == HOW[how]


@pytest.mark.parametrize("fx", [False, True])
def test_strided_writes_are_refused(fx):
    model = Unlike("strided", fx).double().eval()
    with pytest.raises(UnsupportedOpError, match="strided slice"):
        sl.symmetries(model, X)


@pytest.mark.parametrize("fx", [False, True])
def test_a_gap_in_an_empty_tensor_is_refused(fx):
    """``torch.empty`` holds whatever the memory held: a write leaving part of it unwritten
    is refused, not read as a cat with the unwritten part."""
    model = Unlike("gap", fx).double().eval()
    model.empty = True
    with pytest.raises(UnsupportedOpError, match="part by part"):
        sl.symmetries(model, X)


@settings(max_examples=max(12, settings.default.max_examples // 4), deadline=None)
@given(
    widths=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    style=st.sampled_from(
        ["new_empty+copy_", "empty+setitem", "new_zeros+setitem", "fx:new_empty+copy_"]
    ),
    data=st.data(),
)
def test_any_partition_in_any_order_gives_the_cat_group(widths, style, data):
    """Parts of any widths written in any order, any one broadcast over the heads: the group
    of the torch.cat twin; with one write left out (a gap), refused in an empty tensor."""
    order = tuple(data.draw(st.permutations(range(len(widths)))))
    shared = data.draw(st.sampled_from([None, *range(len(widths))]))
    gap = len(widths) > 1 and data.draw(st.booleans())  # (no write at all: fixed data)
    if gap:
        order = order[1:]
    model, twin = _twins(widths, style, order, shared, negative=data.draw(st.booleans()))
    if gap and "zeros" in style:  # the gap keeps its zeros: each write read in turn
        assert sl.check_invariance(model, sl.symmetries(model, X), X).passed
        return
    if gap:  # the gap holds whatever the memory held
        with pytest.raises(UnsupportedOpError, match="new_empty|empty|in-place"):
            sl.symmetries(model, X)
        return
    G, G_twin = sl.symmetries(model, X), sl.symmetries(twin, X)
    assert _factors(G) == _factors(G_twin)
    assert sl.check_invariance(model, G, X).passed


class _Guarded(nn.Module):
    """A model torch.fx traces, or, ``guarded``, one whose assert on a size sends it to
    torch.export: each test below runs in both front-ends."""

    def __init__(self, guarded):
        super().__init__()
        self.guarded = guarded

    def guard(self, x):
        if self.guarded:
            assert x.shape[-1] == 3


class Whole(_Guarded):
    """One write of the whole new tensor: a 2-D one (read as a copy of the part) and a 0-dim
    one (no axis to concatenate along)."""

    def __init__(self, guarded):
        super().__init__(guarded)
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        self.guard(x)
        h = self.a(x)
        out = torch.empty_like(h)
        out.copy_(h)
        total = x.new_zeros(())
        total.copy_(x.sum())
        return self.b(torch.relu(out)) * total


@pytest.mark.parametrize("guarded", [False, True])
def test_a_write_of_the_whole_tensor_is_a_copy(guarded):
    model = Whole(guarded).double().eval()
    G = sl.symmetries(model, X)
    assert G.graph.frontend == ("torch.export" if guarded else "torch.fx")
    assert {f.name for f in G.factors} == {"P[a]", "scale[a]"}
    assert sl.check_invariance(model, G, X).passed


class Blocks(_Guarded):
    """Each column from a block ending in an in-place ReLU: writes in place between the
    writes into the new tensor, each into the block's own new output."""

    def __init__(self, guarded, k=3):
        super().__init__(guarded)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True)) for _ in range(k)
        )
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        self.guard(x)
        out = x.new_empty(x.shape[0], len(self.blocks), 4)
        for i, block in enumerate(self.blocks):
            out[:, i].copy_(block(x))
        return self.head(out).sum(1)


@pytest.mark.parametrize("guarded", [False, True])
def test_in_place_ops_on_new_tensors_between_the_writes(guarded):
    model = Blocks(guarded).double().eval()
    G = sl.symmetries(model, X)
    assert G.graph.frontend == ("torch.export" if guarded else "torch.fx")
    (perm,) = [f for f in G.factors if f.kind == "permutation"]
    assert {name for name, _ in perm.axes} >= {f"blocks.{i}.0.weight" for i in range(3)}
    assert sl.check_invariance(model, G, X).passed


class SelfCopy(_Guarded):
    """``out.copy_(out)`` before the write that fills it: the tensor is read by its own write."""

    def __init__(self, guarded):
        super().__init__(guarded)
        self.a, self.c = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        self.guard(x)
        h = self.a(x)
        out = torch.empty_like(h)
        out.copy_(out)
        out.copy_(h)
        return self.c(torch.tanh(out))


@pytest.mark.parametrize("guarded", [False, True])
def test_a_tensor_copied_into_itself_is_refused_by_name(guarded):
    with pytest.raises(UnsupportedOpError):  # not a failure of symlab's reader
        sl.symmetries(SelfCopy(guarded).double().eval(), X)
