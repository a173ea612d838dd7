"""Products with a weight written by hand (``x @ self.W``, ``x @ self.W.T``, ``torch.addmm``,
``torch.einsum``): read as linear layers where nothing else can see the weight, through
torch.fx and torch.export alike; anything else stays an opaque product (sound)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from ops_contexts import export_only, kinds, prove, same_through_export
from torch import nn

import symlab as sl
from symlab.frontend.patterns.param_matmul import einsum_layout

D = torch.float64


class Raw(nn.Module):
    """Two raw weights and a readout: ``out(act(f(x, W1) + b1))``, ``f`` the form under test.
    ``w1`` is stored ``(in, out)`` when ``stored`` says so, else ``(out, in)``."""

    def __init__(self, form: Callable, stored: str, act: Callable = torch.relu,
                 bias: bool = True, n: int = 4) -> None:  # fmt: skip
        super().__init__()
        g = torch.Generator().manual_seed(0)
        shape = (3, n) if stored == "in_out" else (n, 3)
        self.w1 = nn.Parameter(torch.randn(shape, generator=g, dtype=D))
        self.b1 = nn.Parameter(torch.randn(n, generator=g, dtype=D)) if bias else None
        self.out = nn.Linear(n, 2).double()
        self.form, self.act = form, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.form(self, x)
        if self.b1 is not None and self.form not in WITH_BIAS:
            h = h + self.b1
        return self.out(self.act(h))


IN_OUT: dict[str, Callable] = {
    "x @ W": lambda s, x: x @ s.w1,
    "torch.matmul": lambda s, x: torch.matmul(x, s.w1),
    "x.matmul": lambda s, x: x.matmul(s.w1),
    "einsum bti,io": lambda s, x: torch.einsum("bti,io->bto", x, s.w1),
    "einsum io,...i": lambda s, x: torch.einsum("io,...i->...o", s.w1, x),
}
OUT_IN: dict[str, Callable] = {
    "x @ W.T": lambda s, x: x @ s.w1.T,
    "x @ W.mT": lambda s, x: x @ s.w1.mT,
    "x @ W.t()": lambda s, x: x @ s.w1.t(),
    "torch.t": lambda s, x: x @ torch.t(s.w1),
    "W.transpose(0, 1)": lambda s, x: x @ s.w1.transpose(0, 1),
    "W.transpose(-1, -2)": lambda s, x: x @ s.w1.transpose(-1, -2),
    "torch.transpose": lambda s, x: x @ torch.transpose(s.w1, 1, 0),
    "W.swapaxes": lambda s, x: x @ s.w1.swapaxes(0, 1),
    "W.permute(1, 0)": lambda s, x: x @ s.w1.permute(1, 0),
    "einsum bti,oi": lambda s, x: torch.einsum("bti,oi->bto", x, s.w1),
    "einsum list": lambda s, x: torch.einsum("...i,oi->...o", [x, s.w1]),
}


def _flat_addmm(s: Raw, x: torch.Tensor) -> torch.Tensor:
    w = s.w1 if s.w1.shape[0] == 3 else s.w1.T
    return torch.addmm(s.b1, x.reshape(-1, 3), w).reshape(*x.shape[:-1], -1)


def _flat_mm(s: Raw, x: torch.Tensor) -> torch.Tensor:
    return torch.mm(x.reshape(-1, 3), s.w1).reshape(*x.shape[:-1], -1)


WITH_BIAS = {_flat_addmm}
X = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1), dtype=D) * 2


def _layer(G: sl.SymmetryGroup) -> list[str]:
    return [f.short() for f in G.factors]


@pytest.mark.parametrize("stored,name", [("in_out", k) for k in IN_OUT] +
                         [("out_in", k) for k in OUT_IN])  # fmt: skip
def test_forms_are_linear_layers(stored: str, name: str) -> None:
    """Every form has the hidden layer's permutations and scalings, proved on the model and
    complete against brute force, and torch.export reads the same group."""
    form = {**IN_OUT, **OUT_IN}[name]
    net = Raw(form, stored).eval()
    G = prove(net, X)
    assert _layer(G) == ["S_4", "R_{>0}^4"], _layer(G)
    same_through_export(net, X)


@pytest.mark.parametrize("form,stored", [(_flat_addmm, "in_out"), (_flat_addmm, "out_in"),
                                         (_flat_mm, "in_out")])  # fmt: skip
def test_mm_and_addmm_on_flattened_rows(form: Callable, stored: str) -> None:
    net = Raw(form, stored).eval()
    G = prove(net, X)
    assert _layer(G) == ["S_4", "R_{>0}^4"], _layer(G)
    same_through_export(net, X)


def test_without_bias_and_odd_activation() -> None:
    """No bias, tanh: permutations and signs (no scaling)."""
    net = Raw(IN_OUT["x @ W"], "in_out", act=torch.tanh, bias=False).eval()
    G = prove(net, X)
    assert _layer(G) == ["S_4", "{±1}^4"], _layer(G)


def test_stacked_raw_layers_move_both_weights() -> None:
    """Two raw layers in a row: the action moves both stored weights, (in, out) and (out, in)."""

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.w1 = nn.Parameter(torch.randn(3, 5, generator=g, dtype=D))
            self.w2 = nn.Parameter(torch.randn(4, 5, generator=g, dtype=D))
            self.w3 = nn.Parameter(torch.randn(4, 2, generator=g, dtype=D))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(x @ self.w1)
            h = torch.sigmoid(torch.einsum("bi,oi->bo", h, self.w2))
            return h @ self.w3

    net = Two().eval()
    x = X.reshape(-1, 3)
    G = prove(net, x)
    assert sorted(_layer(G)) == sorted(["S_5", "R_{>0}^5", "S_4"]), _layer(G)
    h = G.sample(torch.Generator().manual_seed(3))
    moved = G.act(h, net.state_dict())
    assert all(not torch.equal(moved[k], v) for k, v in net.state_dict().items())
    same_through_export(net, x)


def _shared(s: Raw, x: torch.Tensor) -> torch.Tensor:  # W read twice: one tensor, two readers
    return x @ s.w1 + (x * 0.5) @ s.w1


def _read_elsewhere(s: Raw, x: torch.Tensor) -> torch.Tensor:
    return x @ s.w1 + s.w1.sum()


def _computed(s: Raw, x: torch.Tensor) -> torch.Tensor:
    return x @ (s.w1 * 2.0)


def _transpose_read_twice(s: Raw, x: torch.Tensor) -> torch.Tensor:
    wt = s.w1.T
    return x @ wt + wt.sum(0)


@pytest.mark.parametrize("form", [_shared, _read_elsewhere, _computed, _transpose_read_twice])
def test_weights_others_see_stay_fixed(form: Callable) -> None:
    """Where something else reads the weight (or it is computed), the product stays opaque:
    no symmetry of the hidden units is derived, and what is derived holds."""
    net = Raw(form, "in_out" if form is not _transpose_read_twice else "out_in").eval()
    G = prove(net, X, complete=False)
    assert "S_4" not in _layer(G)


def test_weight_of_a_called_module_is_shared() -> None:
    """A Linear called as a module and its weight read by hand as well: two calls of one
    layer (weight sharing), tied port by port — one permutation and scaling for both."""

    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 4).double()
            self.out = nn.Linear(8, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.cat([F.relu(self.lin(x)), F.relu(x @ self.lin.weight.T)], -1))

    net = Both().eval()
    G = prove(net, X, complete=False)
    assert _layer(G) == ["S_4", "R_{>0}^4"], _layer(G)
    same_through_export(net, X)


@pytest.mark.parametrize("form", ["T", "einsum", "F.linear", "F.linear + bias"])
def test_output_layer_tied_by_hand_to_the_embedding(form: str) -> None:
    """``h @ self.wte.weight.T`` (or its einsum, or fairseq's ``F.linear(h,
    self.embed.weight)``, with or without a bias of its own) reads the embedding's table as an
    output layer: tied axis by axis with the embedding, the residual stream keeps its
    permutations (before: the product was opaque, or F.linear refused)."""

    class TiedHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.wte, self.fc = nn.Embedding(7, 4), nn.Linear(4, 4)
            self.bias = nn.Parameter(torch.randn(7))

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.wte(ids)
            h = h + F.relu(self.fc(h))
            if form == "T":
                return h @ self.wte.weight.T
            if form == "F.linear":
                return F.linear(h, self.wte.weight)
            if form == "F.linear + bias":
                return F.linear(h, self.wte.weight, self.bias)
            return torch.einsum("btd,vd->btv", h, self.wte.weight)

    net = TiedHead().double().eval()
    ids = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(0))
    G = prove(net, ids, complete=False)
    assert _layer(G) == ["S_4"], _layer(G)
    assert {k for k, _ in G.factors[0].axes} >= {"wte.weight", "fc.weight"}
    same_through_export(net, ids)


def test_units_on_another_axis_are_fixed_in_front() -> None:
    """A product over the positions of a (B, C, L) tensor whose units are its channels: the
    channels are fixed in front of it, and the product's own outputs permute."""

    class Positions(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.conv = nn.Conv1d(2, 3, 1).double()
            self.w = nn.Parameter(torch.randn(6, 4, generator=g, dtype=D))
            self.out = nn.Linear(4, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(F.relu(F.relu(self.conv(x)) @ self.w))

    net = Positions().eval()
    x = torch.randn(5, 2, 6, generator=torch.Generator().manual_seed(2), dtype=D)
    G = prove(net, x)
    assert "S_4" in kinds(G)


def test_export_maps_every_transpose() -> None:
    """torch.export's ``numpy_T``, ``mT``, ``swapaxes``: mapped, not refused."""
    net = Raw(OUT_IN["x @ W.T"], "out_in").eval()
    with export_only():
        for name in ("x @ W.T", "x @ W.mT", "W.swapaxes"):
            net.form = OUT_IN[name]
            G = sl.symmetries(net, X)
            assert _layer(G) == ["S_4", "R_{>0}^4"], (name, _layer(G))


@pytest.mark.parametrize(
    "equation,expected",
    [("bi,io->bo", (1, "in_out")), ("bi,oi->bo", (1, "out_in")), ("oi,bi->bo", (0, "out_in")),
     ("...i,io->...o", (1, "in_out")), ("b t i , o i -> b t o", (1, "out_in")),
     ("bi,io->ob", None), ("bi,bo->io", None), ("ii,io->io", None), ("bi,ii->bi", None),
     ("bi,io", None), ("bi,io,oj->bj", None), ("bi,io->bio", None), ("bij,io->bjo", None)],
)  # fmt: skip
def test_einsum_layout(equation: str, expected: tuple[int, str] | None) -> None:
    assert einsum_layout(equation) == expected


def test_embedding_with_max_norm_is_refused() -> None:
    """``nn.Embedding(max_norm=…)`` rescales the rows it reads in place: GL on its features
    does not hold (a control without max_norm derives GL and proves it)."""

    def net(max_norm: float | None) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Embedding(10, 6, max_norm=max_norm), nn.Linear(6, 3)).double()

    ids = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(0))
    G = sl.symmetries(net(None), ids)
    assert sl.check_invariance(net(None), G, ids).passed
    assert "GL_6" in kinds(G)
    with pytest.raises(sl.errors.UnsupportedOpError, match="max_norm"):
        sl.symmetries(net(1.0), ids)
    with export_only(), pytest.raises(sl.errors.UnsupportedOpError):
        sl.symmetries(net(1.0), ids)


@pytest.mark.parametrize("persistent", [True, False])
@pytest.mark.parametrize("after_layer", [True, False])
def test_buffer_weights(persistent: bool, after_layer: bool) -> None:
    """A persistent buffer is state and moves like a parameter; a non-persistent one is a
    constant, and the product stays opaque (or is fixed data, on the network's input)."""

    class Buf(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.first = nn.Linear(3, 3).double() if after_layer else nn.Identity()
            self.register_buffer("w", torch.randn(3, 4, generator=g, dtype=D), persistent)
            self.out = nn.Linear(4, 2).double()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(F.relu(torch.tanh(self.first(x)) @ self.w))

    net = Buf().eval()
    G = prove(net, X, complete=persistent)
    assert ("S_4" in kinds(G)) == persistent
    same_through_export(net, X)
