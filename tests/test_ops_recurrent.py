"""Recurrent layers (issue 13, deliverable 4): nn.RNN (tanh, relu), nn.GRU and nn.LSTM derive
the group of their cell type — signed permutations of the hidden units for tanh RNNs, GRUs and
LSTMs (shared by every gate block and the recurrent matrix), permutations and positive scalings
for relu RNNs — in every context (after a Linear, after a sigmoid, stacked, bidirectional,
batch-first, unbatched, without biases, under a residual add, reading h_n, an encoder feeding a
decoder), checked on sampled elements and against brute force both ways; with negative
controls and the refusals."""

from __future__ import annotations

import pytest
import torch
from ops_contexts import kinds, prove, same_through_export
from torch import nn

import symlab as sl
from symlab.errors import TraceError, UnsupportedOpError

#: torch.export warns about the flat weights of recurrent modules; not ours to act on.
pytestmark = pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")

CELLS = {
    "rnn_tanh": (lambda **kw: nn.RNN(**kw), ["S_3", "{±1}^3"]),
    "rnn_relu": (lambda **kw: nn.RNN(nonlinearity="relu", **kw), ["S_3", "R_{>0}^3"]),
    "gru": (lambda **kw: nn.GRU(**kw), ["S_3", "{±1}^3"]),
    "lstm": (lambda **kw: nn.LSTM(**kw), ["S_3", "{±1}^3"]),
}


class Seq(nn.Module):
    """``[fc →] [sigmoid →] rnn → (last step | h_n[-1]) [+ residual] → out``."""

    def __init__(self, cell: str, context: str, hidden: int = 3, **kw: object) -> None:
        super().__init__()
        self.context = context
        d_in = 3 if context in ("direct", "h_n", "unbatched") else 2
        self.fc = None if d_in == 3 else nn.Linear(3, 3 if context == "residual" else 2)
        if context == "residual":
            d_in = 3
        kw.setdefault("batch_first", True)
        self.rnn = CELLS[cell][0](input_size=d_in, hidden_size=hidden, **kw)
        width = hidden * (2 if kw.get("bidirectional") else 1)
        self.out = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fc is not None:
            x = self.fc(x)
        if self.context == "sigmoid":
            x = torch.sigmoid(x)
        y, h = self.rnn(x)
        if self.context == "h_n":
            h = h[0] if isinstance(h, tuple) else h
            return self.out(h[-1])
        if self.context == "residual":
            y = y + x
        if self.context == "unbatched":
            return self.out(y[-1])
        return self.out(y[:, -1])


def _x(context: str = "direct", seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (5, 3) if context == "unbatched" else (6, 5, 3)
    return torch.randn(shape, generator=g, dtype=torch.float64) * 1.5


def _net(cell: str, context: str, seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    return Seq(cell, context, **kw).double().eval()


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_group_of_each_cell_type(cell: str) -> None:
    G = prove(_net(cell, "direct"), _x())
    assert kinds(G) == CELLS[cell][1]


CONTEXTS = {
    "after_linear": {},
    "sigmoid": {},
    "h_n": {},
    "residual": {},
    "unbatched": {"batch_first": False},
    "no_bias": {"bias": False},
    "stacked": {"num_layers": 2},
    "bidirectional": {"bidirectional": True},
    "time_major": {"batch_first": False},
}


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_sound_and_complete_in_every_context(cell: str, context: str) -> None:
    kw = dict(CONTEXTS[context])
    where = context if context in ("sigmoid", "h_n", "residual", "unbatched") else "after_linear"
    if context == "time_major":
        where = "direct"
    net = _net(cell, where, **kw)
    x = _x(where)
    if context == "time_major":
        x = x.transpose(0, 1).contiguous()
        net.forward = lambda x: net.out(net.rnn(x)[0][-1])  # type: ignore[method-assign]
    prove(net, x)


def test_a_sigmoid_flip_before_a_biased_rnn_is_absorbed() -> None:
    """σ(-z) = 1 - σ(z): the input shift is absorbed by b_ih (W_ih (x + c) + b = W_ih x + b'),
    so the flips of the sigmoid's units are derived; without biases they are not."""
    G = prove(_net("lstm", "sigmoid"), _x("sigmoid"))
    assert "flip" in {f.kind for f in G.factors}
    G = prove(_net("lstm", "sigmoid", bias=False), _x("sigmoid"))
    assert "flip" not in {f.kind for f in G.factors}


class EncDec(nn.Module):
    """An encoder whose final state starts a decoder (``(h_n, c_n)`` passed whole for LSTMs)."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.enc = CELLS[cell][0](input_size=3, hidden_size=3, batch_first=True)
        self.dec = CELLS[cell][0](input_size=2, hidden_size=3, batch_first=True)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _, state = self.enc(x)
        z, _ = self.dec(y, state)
        return self.out(z[:, -1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_encoder_state_starts_the_decoder(cell: str) -> None:
    """The initial state ties the decoder's hidden units to the encoder's: one space."""
    torch.manual_seed(0)
    net = EncDec(cell).double().eval()
    g = torch.Generator().manual_seed(1)
    xs = (torch.randn(4, 5, 3, generator=g, dtype=torch.float64),
          torch.randn(4, 3, 2, generator=g, dtype=torch.float64))  # fmt: skip
    G = sl.symmetries(net, xs)
    assert kinds(G) == ["S_3", "{±1}^3"]
    assert sl.check_invariance(net, G, xs).passed
    bf = sl.brute_force_group(net, xs)
    missed, extra = bf.compare(G)
    assert not (missed.permutations or missed.signs or extra.permutations or extra.signs)


def test_an_initial_state_given_as_input_fixes_the_hidden_units() -> None:
    class WithState(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.out = nn.GRU(3, 3, batch_first=True), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
            return self.out(self.rnn(x, h0)[0][:, -1])

    net = WithState().double()
    xs = (_x(), torch.randn(1, 6, 3, dtype=torch.float64))
    G = sl.symmetries(net, xs)
    assert kinds(G) == []
    assert sl.check_invariance(net, G, xs).passed


class ZeroState(nn.Module):
    """``fc → sigmoid → rnn(·, zeros)``: the usual explicit zero initial state."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.lstm = cell == "lstm"
        self.fc = nn.Linear(3, 2)
        self.rnn = CELLS[cell][0](input_size=2, hidden_size=3, num_layers=2, batch_first=True)
        self.out = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = torch.zeros(2, x.size(0), 3).to(x.dtype)
        state = (h0, torch.zeros(2, x.size(0), 3, dtype=x.dtype)) if self.lstm else h0
        y, _ = self.rnn(torch.sigmoid(self.fc(x)), state)
        return self.out(y[:, -1])


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_zero_initial_state_is_no_state(cell: str) -> None:
    """``torch.zeros`` as the initial state moves with nothing (``M 0 = 0``): the hidden units
    keep their group, and the sigmoid's flips before the first layer are absorbed by its
    ``b_ih``; read the same through torch.export (GRU)."""
    torch.manual_seed(0)
    net = ZeroState(cell).double().eval()
    G = prove(net, _x())
    assert kinds(G) == ["S_2", "Z2^2(flip)", "S_3", "{±1}^3", "S_3", "{±1}^3"]
    same_through_export(net, _x())


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_same_group_through_torch_export(cell: str) -> None:
    same_through_export(_net(cell, "after_linear", num_layers=2), _x("after_linear"))


@pytest.mark.parametrize("context", ["direct", "h_n", "sigmoid", "residual"])
def test_lstm_through_torch_export(context: str) -> None:
    """An LSTM returns a nested tuple, ``(output, (h_n, c_n))``: torch.export reads each leaf
    the graph uses through a chain of ``getitem``; the group equals torch.fx's and is proven."""
    same_through_export(_net("lstm", context), _x(context))


class CellState(nn.Module):
    """Reads the LSTM's cell state ``c_n`` (the second leaf of the nested tuple) beside ``y``."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 3, num_layers=2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(6 + 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, (_, c) = self.rnn(x)
        return self.out(torch.cat([y[:, -1], torch.tanh(c[-1])], -1))


def test_lstm_cell_state_through_torch_export() -> None:
    torch.manual_seed(0)
    G = same_through_export(CellState().double().eval(), _x())
    assert "S_3" in kinds(G)


def test_a_module_returning_anything_but_tuples_of_tensors_is_a_named_error() -> None:
    from symlab.frontend.export import _tuple_leaves

    assert [p for p, _ in _tuple_leaves((1 * torch.ones(1), (None, torch.ones(1))), "m")] == [
        (0,),
        (1, 0),
        (1, 1),
    ]
    with pytest.raises(TraceError, match="returns a dict"):
        _tuple_leaves((torch.ones(1), {"h": torch.ones(1)}), "module 'rnn' (Odd)")


# -- negative controls --------------------------------------------------------------------------


def _hidden_map(net: nn.Module, gates: tuple[str, ...], d: torch.Tensor) -> dict:
    """Move the hidden units by the diagonal ``d``, scaling the rows of the gate blocks marked
    ``full`` and every recurrent column, and compensating in the head."""
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    h = len(d)
    for key in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"):
        blocks = list(sd[key].reshape(len(gates), h, *sd[key].shape[1:]).unbind(0))
        for i, kind in enumerate(gates):
            if kind == "full":
                blocks[i] = blocks[i] * d.reshape(-1, *([1] * (blocks[i].ndim - 1)))
        sd[key] = torch.cat(blocks, 0)
    sd["rnn.weight_hh_l0"] = sd["rnn.weight_hh_l0"] / d
    sd["out.weight"] = sd["out.weight"] / d
    return sd


def _changes(net: nn.Module, sd: dict, x: torch.Tensor) -> bool:
    return not torch.allclose(torch.func.functional_call(net, sd, (x,)), net(x), atol=1e-7)


def test_controls_the_map_on_the_gates_matters() -> None:
    """Signs on the candidate rows only keep an LSTM's outputs; signs on every gate block
    (sigmoids are not odd), or a positive scale (tanh is not homogeneous), change them; a
    positive scale keeps a relu RNN's outputs and signs change them."""
    x, s = _x(), torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)
    c = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    lstm = _net("lstm", "direct")
    assert not _changes(lstm, _hidden_map(lstm, ("perm", "perm", "full", "perm"), s), x)
    assert _changes(lstm, _hidden_map(lstm, ("full",) * 4, s), x)
    assert _changes(lstm, _hidden_map(lstm, ("perm", "perm", "full", "perm"), c), x)
    gru = _net("gru", "direct")
    assert not _changes(gru, _hidden_map(gru, ("perm", "perm", "full"), s), x)
    assert _changes(gru, _hidden_map(gru, ("full",) * 3, s), x)
    relu = _net("rnn_relu", "direct")
    assert not _changes(relu, _hidden_map(relu, ("full",), c), x)
    assert _changes(relu, _hidden_map(relu, ("full",), s), x)


# -- refusals -------------------------------------------------------------------------------------


def test_refusals_are_named() -> None:
    class Whole(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 3, batch_first=True)

        def forward(self, x: torch.Tensor):
            return self.rnn(x)

    with pytest.raises(UnsupportedOpError, match="used whole"):
        sl.symmetries(Whole().double(), _x())
    proj = Seq("lstm", "direct")
    proj.rnn = nn.LSTM(3, 4, proj_size=3, batch_first=True)
    with pytest.raises(UnsupportedOpError, match="proj_size"):
        sl.symmetries(proj.double(), _x())

    class Packed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 3, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            packed = nn.utils.rnn.pack_padded_sequence(x, [5] * x.shape[0], batch_first=True)
            return self.rnn(packed)[1][-1]

    with pytest.raises(TraceError):  # neither front-end traces pack_padded_sequence
        sl.symmetries(Packed().double(), _x())
