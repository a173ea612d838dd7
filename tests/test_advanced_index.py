"""Rows picked by tensors (advanced indexing of axes other than the units): ``h[mask]`` with a
mask of the input (BART's ``<eos>`` pooling), ``h[:, idx]``, ``h[torch.nonzero(m)]``, integer
buffers of positions. The units stay whole, so every map of them commutes with the pick —
as long as the picked rows do not depend on what the group moves (a mask of hidden units, of
a parameter), which keeps the result fixed. Both front-ends; torch.export keeps the number of
picked rows symbolic."""

from __future__ import annotations

import operator
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from ops_contexts import export_only, kinds, prove
from torch import nn

import symlab as sl
import symlab.frontend.convert as convert_mod
from symlab.errors import UnsupportedOpError
from symlab.frontend.axes import IndexTensor, moved_feature_axis

D = torch.float64


@st.composite
def _indexing(draw: st.DrawFn) -> tuple[tuple[int, ...], int, tuple[Any, ...]]:
    """A shape, the units' axis, and an index of slices and (at least one) tensor of the
    other axes: integer tensors of one drawn shape (so that they broadcast), masks over one or
    two axes, adjacent or apart, the trailing axes sometimes left implicit."""
    shape = tuple(draw(st.lists(st.integers(2, 4), min_size=2, max_size=4)))
    fa = draw(st.integers(0, len(shape) - 1))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    dims = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    kinds_ = st.sampled_from(["whole", "slice", "ints", "ints", "mask", "mask"])
    items: list[Any] = []
    at: list[int] = []  # the first axis of each item
    axis = 0
    while axis < len(shape):
        tensor = any(isinstance(i, torch.Tensor) for i in items)
        if axis > fa and tensor and draw(st.integers(0, 3)) == 0:
            break  # the rest implicit
        kind = "whole" if axis == fa else draw(kinds_)
        span = 1
        if kind == "mask":
            room = (fa if fa > axis else len(shape)) - axis
            span = draw(st.integers(1, max(1, min(2, room))))
            items.append(torch.rand(shape[axis : axis + span], generator=g) > 0.4)
        elif kind == "ints":
            items.append(torch.randint(0, shape[axis], dims, generator=g))
        else:
            items.append(slice(None) if kind == "whole" else slice(1, None))
        at.append(axis)
        axis += span
    if not any(isinstance(i, torch.Tensor) for i in items):
        k = next(k for k, a in enumerate(at) if a != fa)  # (every item is one axis here)
        items[k] = torch.randint(0, shape[at[k]], dims, generator=g)
    return shape, fa, tuple(items)


def _described(items: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        IndexTensor(i.ndim, i.dtype == torch.bool) if isinstance(i, torch.Tensor) else i
        for i in items
    )


def _lands_where_torch_puts_it(case: tuple) -> None:
    """A tensor holding each unit's index along the units' axis, indexed by torch: the axis
    predicted holds unit ``j`` at position ``j`` everywhere (and an index that leaves the units
    whole and uses only slices and tensors of one or more axes is always read)."""
    shape, fa, items = case
    marks = torch.arange(shape[fa], dtype=D).reshape([-1 if a == fa else 1 for a in
                                                      range(len(shape))]).expand(shape)  # fmt: skip
    try:
        out = marks[items]
    except (IndexError, RuntimeError):  # tensor items that do not broadcast together
        return
    got = moved_feature_axis(operator.getitem, (_described(items),), fa, shape, tuple(out.shape))
    if any(isinstance(i, torch.Tensor) and i.ndim == 0 for i in items):
        assert got is None  # torch reads a 0-dim index as an int: not modelled
        return
    assert got is not None, (shape, fa, items, out.shape)
    assert out.shape[got] == shape[fa]
    expected = torch.arange(shape[fa], dtype=D).reshape(
        [-1 if a == got else 1 for a in range(out.ndim)]
    )
    assert torch.equal(out, expected.expand(out.shape)), (shape, fa, items, got)


@given(_indexing())
def test_the_units_land_where_torch_puts_them(case: tuple) -> None:
    _lands_where_torch_puts_it(case)


def test_negative_control_a_placement_rule_ignoring_apart_tensors_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The property catches a rule that keeps the tensor items' block in place when they are
    apart (torch puts it in front): ``x[:, i, :, j]`` on (3, 4, 5, 6) with units on axis 0
    gives (2, 3, 5), the units on axis 1."""
    import symlab.frontend.axes as axes_mod

    real = axes_mod._advanced

    def in_place(items, fa, shape_in, shape_out):  # type: ignore[no-untyped-def]
        got = real(items, fa, shape_in, shape_out)
        return None if got is None else fa  # the units before the block: not moved

    i, j = torch.tensor([0, 1]), torch.tensor([2, 0])
    case = ((3, 4, 5, 6), 0, (slice(None), i, slice(None), j))
    _lands_where_torch_puts_it(case)  # the real rule passes
    monkeypatch.setattr(axes_mod, "_advanced", in_place)
    with pytest.raises(AssertionError):
        _lands_where_torch_puts_it(case)


def test_indexing_the_units_with_a_tensor_is_not_a_relayout() -> None:
    i = IndexTensor(1, False)
    assert moved_feature_axis(operator.getitem, ((slice(None), i),), 1,
                              (2, 5), (2, 3)) is None  # fmt: skip
    m = IndexTensor(2, True)  # a mask over (T, E): the units among the masked axes
    assert moved_feature_axis(operator.getitem, ((slice(None), m),), 2,
                              (2, 7, 5), (2, 9)) is None  # fmt: skip


class Pick(nn.Module):
    """``b(pick(relu(a(x))))`` for the pick ``form``."""

    def __init__(self, form: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.form = nn.Linear(3, 5), nn.Linear(5, 2), form
        self.w = nn.Parameter(torch.randn(6))
        self.register_buffer("idx", torch.tensor([0, 2, 2, 5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        picks = {
            "input mask": lambda: h[x[..., 0] > 0],
            "nonzero": lambda: h[torch.nonzero(x[..., 0] > 0).squeeze(-1)],
            "int buffer": lambda: h[self.idx],
            "argsort of the input": lambda: h[x[..., 0].argsort()],
            "rows and columns": lambda: h[self.idx[:, None], :][:, 0],
            "hidden mask": lambda: h[h[..., 0] > 0.1],
            "parameter mask": lambda: h[self.w > 0],
        }
        return self.b(picks[self.form]())


X = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=D)


@pytest.mark.parametrize(
    "form", ["input mask", "nonzero", "int buffer", "argsort of the input", "rows and columns"]
)
def test_rows_picked_by_fixed_data(form: str) -> None:
    """The hidden units keep their permutations and scalings through the pick (before: the
    pick was opaque and fixed them), proved against brute force in both front-ends."""
    net = Pick(form).double()
    G = prove(net, X)
    assert kinds(G) == ["S_5", "R_{>0}^5"], kinds(G)
    with export_only():
        assert kinds(prove(net, X)) == kinds(G)


@pytest.mark.parametrize("form", ["hidden mask", "parameter mask"])
def test_rows_picked_by_what_moves_stay_fixed(form: str) -> None:
    """A mask of hidden units or of a parameter changes with the group: the picked rows would
    too, so the pick is opaque and the units before it fixed."""
    net = Pick(form).double()
    G = prove(net, X, complete=False)
    assert "S_5" not in kinds(G)
    with export_only():
        assert "S_5" not in kinds(prove(net, X, complete=False))


class EosPooling(nn.Module):
    """BART's classification head: the hidden state at each sequence's last ``<eos>``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.fc, self.head = nn.Embedding(10, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        h = h + torch.relu(self.fc(h))
        eos = ids.eq(2)
        picked = h[eos, :].view(h.size(0), -1, h.size(-1))[:, -1, :]
        return self.head(torch.tanh(picked))


def test_eos_pooling_keeps_the_residual_stream() -> None:
    ids = torch.randint(3, 10, (2, 7), generator=torch.Generator().manual_seed(0))
    ids[:, -1], ids[0, 2], ids[1, 4] = 2, 2, 2
    net = EosPooling().double()
    G = sl.symmetries(net, ids)
    assert "S_6" in kinds(G), kinds(G)
    assert sl.check_invariance(net, G, ids).passed
    with export_only():
        G_export = sl.symmetries(net, ids)
        assert kinds(G_export) == kinds(G)
        assert sl.check_invariance(net, G_export, ids).passed


def test_units_on_a_data_dependent_axis_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control of the torch.export guard: were the pick read as putting the units on
    the picked rows' axis (whose size is the example's alone), the reader refuses by name."""
    net = Pick("input mask").double()
    real = convert_mod.moved_feature_axis

    def wrong(fn: Any, args: Any, fa: int, shape_in: Any, shape_out: Any) -> int | None:
        got = real(fn, args, fa, shape_in, shape_out)
        index = args[0] if args and isinstance(args[0], tuple) else args
        picked = any(isinstance(i, IndexTensor) for i in index)
        return 0 if picked and got is not None else got

    monkeypatch.setattr(convert_mod, "moved_feature_axis", wrong)
    with export_only(), pytest.raises(UnsupportedOpError, match="depends on the values"):
        sl.symmetries(net, X)


def test_the_example_input_is_left_as_given() -> None:
    """A model that writes into its input, with a pick fake tensors cannot size (the shapes
    are then recorded on a real run): symlab runs it on a copy, so the caller's tensor — and
    the rows a later call picks from it — stay as given (it was changed in place)."""

    class WritesItsInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            rows = h.flatten(1)  # h itself
            h.tanh_()
            return self.fc(h[rows[:, 0] > -0.5])

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)) * 3
    before = x.clone()
    sl.symmetries(WritesItsInput(), x)
    assert torch.equal(x, before)


def test_an_example_that_picks_no_row() -> None:
    """A pick that leaves no row on the example (``h[h[:, 0] > 1e9]``): the empty tensor
    keeps its units' width, so the layer after it is read with its real weight (it was read
    as one input wide, and acting on the state_dict failed); the layers before keep their
    symmetries."""

    class NoRow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.b(torch.relu(self.a(x)))
            return self.c(torch.relu(h[h[:, 0] > 1e9]))

    net = NoRow().double()
    g = sl.trace(net, X)
    assert g.node("c").params[0].shape == (2, 4)
    G = sl.symmetries(net, X)
    assert "S_4" in kinds(G)
    moved = G.act(G.sample(0), net.state_dict())
    assert {k: v.shape for k, v in moved.items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }
