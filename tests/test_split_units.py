"""Cuts of the units into parts (``torch.split``, ``torch.chunk``, ``x[..., a:b]``,
``x.narrow``): GEGLU and SwiGLU written with one fused projection get their symmetries, the
parts of a linear output moving with one map each, through torch.fx and torch.export alike;
parts that do not tile the tensor, or a tensor that is no space of its own, stay fixed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from ops_contexts import kinds, prove, same_through_export
from torch import nn

import symlab as sl

D = torch.float64


class Fused(nn.Module):
    """``out(f(proj(x)))`` for a form ``f`` that cuts ``proj``'s units."""

    def __init__(self, form: Callable, width: int = 6, out_in: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj, self.out, self.form = nn.Linear(3, width), nn.Linear(out_in, 2), form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.form(self, x))


def geglu_chunk(s: Fused, x: torch.Tensor) -> torch.Tensor:  # diffusers' GEGLU
    h, gate = s.proj(x).chunk(2, dim=-1)
    return h * F.gelu(gate)


def swiglu_split(s: Fused, x: torch.Tensor) -> torch.Tensor:  # the gate first
    a, b = s.proj(x).split(3, -1)
    return F.silu(a) * b


def geglu_slices(s: Fused, x: torch.Tensor) -> torch.Tensor:
    h = s.proj(x)
    return h[..., :3] * F.gelu(h[..., 3:])


def geglu_narrow(s: Fused, x: torch.Tensor) -> torch.Tensor:
    h = s.proj(x)
    return h.narrow(-1, 0, 3) * F.gelu(h.narrow(-1, -3, 3))


def items(s: Fused, x: torch.Tensor) -> torch.Tensor:  # items read by index, one negative
    parts = torch.chunk(s.proj(x), 2, -1)
    return parts[0] * torch.sigmoid(parts[-1])


def tensor_split(s: Fused, x: torch.Tensor) -> torch.Tensor:
    h, gate = s.proj(x).tensor_split(2, -1)
    return h * F.gelu(gate)


GATED = [geglu_chunk, swiglu_split, geglu_slices, geglu_narrow, items, tensor_split]


@pytest.mark.parametrize("form", GATED, ids=lambda f: f.__name__)
def test_gated_forms(form: Callable) -> None:
    """One permutation for value, gate and product; a per-unit scale and sign on the value."""
    net = Fused(form).double().eval()
    x = torch.randn(9, 3, dtype=D, generator=torch.Generator().manual_seed(1)) * 2
    G = prove(net, x)
    assert kinds(G) == ["S_3", "R_{>0}^3", "{±1}^3"], kinds(G)
    same_through_export(net, x)


def uneven(s: Fused, x: torch.Tensor) -> torch.Tensor:
    a, b, c = torch.split(s.proj(x), [2, 1, 3], dim=-1)
    return torch.cat([F.relu(a), torch.tanh(b), c], -1)


def test_uneven_parts_move_independently() -> None:
    """Three parts, each its own space: ReLU part (S × R>0), tanh part (signs), linear part
    (GL with the readout)."""
    net = Fused(uneven, out_in=6).double().eval()
    x = torch.randn(9, 3, dtype=D, generator=torch.Generator().manual_seed(1)) * 2
    G = prove(net, x)
    assert sorted(kinds(G)) == sorted(["S_2", "R_{>0}^2", "S_1", "{±1}^1", "GL_3"]), kinds(G)
    h = G.sample(torch.Generator().manual_seed(0))
    moved = G.act(h, net.state_dict())
    assert not torch.equal(moved["proj.weight"], net.state_dict()["proj.weight"])
    same_through_export(net, x)


def part_unused(s: Fused, x: torch.Tensor) -> torch.Tensor:
    a, _ = s.proj(x).chunk(2, -1)
    return F.relu(a)


def overlapping(s: Fused, x: torch.Tensor) -> torch.Tensor:
    h = s.proj(x)
    return F.relu(h[..., :3]) + F.relu(h[..., 2:5])


def read_whole_too(s: Fused, x: torch.Tensor) -> torch.Tensor:
    h = s.proj(x)
    a, b = h.chunk(2, -1)
    return F.relu(a) * b + h[..., ::2]


def after_activation(s: Fused, x: torch.Tensor) -> torch.Tensor:  # no space of its own
    a, b = F.relu(s.proj(x)).chunk(2, -1)
    return a * b


def stepped(s: Fused, x: torch.Tensor) -> torch.Tensor:
    h = s.proj(x)
    return F.relu(h[..., ::2]) * h[..., 1::2]


@pytest.mark.parametrize("form", [part_unused, overlapping, read_whole_too, after_activation,
                                  stepped], ids=lambda f: f.__name__)  # fmt: skip
def test_parts_that_do_not_tile_stay_fixed(form: Callable) -> None:
    """Nothing of the projection's units is derived (its output is fixed), and what is
    derived holds; brute force finds no permutation or sign the derivation invents."""
    net = Fused(form).double().eval()
    x = torch.randn(9, 3, dtype=D, generator=torch.Generator().manual_seed(1)) * 2
    G = prove(net, x, complete=False)
    assert not any(f.kind == "permutation" for f in G.factors), kinds(G)


def test_cut_of_another_axis_is_not_a_part() -> None:
    """A chunk along the batch axis keeps the units whole (not read as parts of them)."""

    def rows(s: Fused, x: torch.Tensor) -> torch.Tensor:
        a, b = s.proj(x).chunk(2, 0)
        return F.relu(torch.cat([b, a], 0))

    net = Fused(rows, out_in=6).double().eval()
    x = torch.randn(8, 3, dtype=D, generator=torch.Generator().manual_seed(1))
    G = prove(net, x, complete=False)
    assert "split_part" not in [n.op for n in G.graph.nodes()]


@pytest.mark.parametrize("ranges,dimension", [([(0, 3), (3, 6)], 18), ([(0, 2), (3, 6)], 0),
                                              ([(0, 3), (2, 6)], 0), ([(0, 3)], 0)])  # fmt: skip
def test_the_rule_checks_the_tiling(ranges: list[tuple[int, int]], dimension: int) -> None:
    """The rule reads the parts' ranges on a builder graph: parts that tile the linear's output
    move with GL each; a gap, an overlap or a part left out fixes them all."""
    g = sl.graph.ArchGraph()
    g.add("input", "input", width=3)
    g.add("lin", "linear", ["input"], width=6)
    for i, (start, stop) in enumerate(ranges):
        g.add(f"p{i}", "split_part", ["lin"], width=stop - start, start=start, stop=stop)
    names = [f"p{i}" for i in range(len(ranges))]
    g.add("cat", "concat", names, width=sum(b - a for a, b in ranges))
    g.add("out", "linear", ["cat"], width=2)
    g.add("output", "output", ["out"])
    assert sl.symmetries(g).dimension == dimension


def test_cut_of_a_hand_written_product() -> None:
    """``(x @ self.W).chunk(2, -1)`` with ``W`` stored ``(in, out)`` (a ``linear_t``): the same
    gated symmetries as with a Linear; the action moves ``W``'s columns."""

    class Raw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.w = nn.Parameter(torch.randn(3, 6, generator=g, dtype=D))
            self.out = nn.Linear(3, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, gate = (x @ self.w).chunk(2, -1)
            return self.out(h * F.gelu(gate))

    net = Raw().eval()
    x = torch.randn(9, 3, dtype=D, generator=torch.Generator().manual_seed(1)) * 2
    G = prove(net, x)
    assert kinds(G) == ["S_3", "R_{>0}^3", "{±1}^3"], kinds(G)
    same_through_export(net, x)


_ACTS = {"relu": F.relu, "tanh": torch.tanh, "identity": lambda t: t}


class Cut(nn.Module):
    """``proj(x)`` cut into parts of ``widths`` (by ``form``), the parts in ``read`` each
    activated, concatenated and read out."""

    def __init__(self, widths: list[int], form: str, read: list[int], acts: list[str]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.widths, self.form, self.read, self.acts = widths, form, read, acts
        self.proj = nn.Linear(3, sum(widths))
        self.out = nn.Linear(sum(widths[i] for i in read), 2)

    def parts(self, y: torch.Tensor) -> list[torch.Tensor]:
        starts = [sum(self.widths[:i]) for i in range(len(self.widths))]
        if self.form == "split":
            return list(torch.split(y, self.widths, dim=-1))
        if self.form == "slices":
            return [y[..., s : s + w] for s, w in zip(starts, self.widths, strict=True)]
        return [y.narrow(-1, s, w) for s, w in zip(starts, self.widths, strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.parts(self.proj(x))
        return self.out(torch.cat([_ACTS[self.acts[i]](parts[i]) for i in self.read], -1))


@settings(max_examples=max(12, settings.default.max_examples // 4), deadline=None)
@given(
    widths=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    form=st.sampled_from(["split", "slices", "narrow"]),
    data=st.data(),
)
def test_any_tiling_in_any_order(widths: list[int], form: str, data: st.DataObject) -> None:
    """Parts of any widths read in any order: where every part is read, each moves with its own
    activation's group (a ReLU part: S × R>0, tanh: S × signs, none: GL with the readout);
    with a part left unread, the projection is fixed. Proved on the model either way."""
    k = len(widths)
    acts = data.draw(st.lists(st.sampled_from(sorted(_ACTS)), min_size=k, max_size=k))
    order = list(data.draw(st.permutations(range(k))))
    drop = data.draw(st.booleans()) and k > 1
    read = order[:-1] if drop else order
    net = Cut(widths, form, read, acts).double().eval()
    x = torch.randn(7, 3, dtype=D, generator=torch.Generator().manual_seed(1)) * 2
    G = prove(net, x, brute=sum(widths) <= 6, complete=False)
    perms = sorted(f.short() for f in G.factors if f.kind == "permutation")
    if drop:
        assert perms == [], kinds(G)
    else:
        want = sorted(f"S_{widths[i]}" for i in range(k) if acts[i] != "identity")
        assert perms == want, (kinds(G), widths, acts)
