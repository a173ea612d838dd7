"""Chains of nn.Linear and ReLU run with in-place ReLUs inside interpolate
(symlab.connect.chain): what is recognised, what is refused, and that curves do not change."""

from __future__ import annotations

import itertools

import pytest
import torch
from curve_util import plain_curve, xy
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import symlab as sl
import symlab.connect.path_eval as path_eval
from symlab.connect import interpolate
from symlab.connect.chain import Chain, find_chain
from symlab.connect.path_eval import loss_terms


class Functional(nn.Module):
    """A chain written the way users write it: attributes and a functional ReLU."""

    def __init__(self, widths: list[int], relus: list[bool], style: str, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fcs = nn.ModuleList(nn.Linear(i, o) for i, o in itertools.pairwise(widths))
        self.relus, self.style = relus, style

    def forward(self, x):
        for fc, relu in zip(self.fcs, self.relus, strict=True):
            x = fc(x)
            if relu:
                if self.style == "F.relu":
                    x = F.relu(x)
                elif self.style == "torch.relu":
                    x = torch.relu(x)
                elif self.style == "method":
                    x = x.relu()
                else:  # in place, as users also write it
                    x = F.relu(x, inplace=True)
        return x


def sequential(widths: list[int], relus: list[bool], seed: int, inplace: bool) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for (i, o), relu in zip(itertools.pairwise(widths), relus, strict=True):
        layers.append(nn.Linear(i, o))
        if relu:
            layers.append(nn.ReLU(inplace=inplace))
    return nn.Sequential(*layers)


def build(kind: str, widths: list[int], relus: list[bool], seed: int) -> nn.Module:
    if kind == "mlp":  # symlab's own MLP: ReLU after every hidden layer, none after the head
        return sl.nn.MLP(widths, seed=seed)
    if kind.startswith("sequential"):
        return sequential(widths, relus, seed, inplace=kind.endswith("inplace"))
    return Functional(widths, relus, kind, seed)


KINDS = ["mlp", "sequential", "sequential-inplace", "F.relu", "torch.relu", "method", "inplace"]


def no_chain(monkeypatch) -> None:
    monkeypatch.setattr(path_eval, "find_chain", lambda model: None)


@settings(max_examples=20, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    widths=st.lists(st.integers(1, 12), min_size=2, max_size=5),
    relus=st.lists(st.booleans(), min_size=4, max_size=4),
    n=st.integers(1, 70),
    block=st.sampled_from([None, 16]),  # one block, or several
)
def test_chain_curves_equal_the_plain_computation(kind, widths, relus, n, block):
    relus = relus[: len(widths) - 1] if kind != "mlp" else [True] * (len(widths) - 2) + [False]
    a, b = build(kind, widths, relus, 0), build(kind, widths, relus, 1)
    chain = find_chain(a)
    assert chain is not None
    assert [r for _, r in chain.steps] == relus
    x, y = xy(n=n, d=widths[0], k=max(widths[-1], 1))
    y = y % widths[-1]
    x0 = x.clone()
    used = []
    checked = path_eval._checked

    def spy(chain, work, x, served):
        exact, buffered = checked(chain, work, x, served)
        used.append((exact is not work, buffered is not None))
        return exact, buffered

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(path_eval, "_checked", spy)
        curve = interpolate(a, b, (x, y), n_alphas=5, batch_size=block)
        assert used == [(True, True)]  # the chain passed both checks and ran the rest
        no_chain(mp)
        plain = interpolate(a, b, (x, y), n_alphas=5, batch_size=block)
    assert torch.equal(x, x0)  # the in-place ReLUs never touch the caller's inputs
    ends = [0, -1]  # the endpoints: the same floats, not merely close
    assert torch.equal(curve.loss[ends], plain.loss[ends])
    assert torch.equal(curve.accuracy[ends], plain.accuracy[ends])
    # between them: the same function, its biases added in another order
    torch.testing.assert_close(curve.loss, plain.loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(curve.accuracy, plain.accuracy, rtol=0, atol=1.0 / n)
    ref = plain_curve(a, b, x, y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alphas", [[0.5, 0.0, 1.0], [0.25, 0.75], [1.0, 0.5, 0.0]])
def test_chain_curve_in_any_alpha_order(alphas, monkeypatch):
    # the chain is checked at the first α, an endpoint or not; the endpoints keep the models'
    # own floats wherever they come in the order, the rest agrees up to rounding
    a, b = sl.nn.MLP([6, 9, 7, 3], seed=0), sl.nn.MLP([6, 9, 7, 3], seed=1)
    x, y = xy(n=50, d=6, k=3)
    curve = interpolate(a, b, (x, y), alphas=torch.tensor(alphas), batch_size=16)
    no_chain(monkeypatch)
    plain = interpolate(a, b, (x, y), alphas=torch.tensor(alphas), batch_size=16)
    ends = [i for i, al in enumerate(alphas) if al in (0.0, 1.0)]
    assert torch.equal(curve.loss[ends], plain.loss[ends])
    torch.testing.assert_close(curve.loss, plain.loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(curve.accuracy, plain.accuracy, rtol=0, atol=1 / 50)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(F.relu(h) + h)  # fc1's output is read twice


class ReadTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return self.fc2(h), h  # two outputs


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x, scale=1.0):
        return self.fc(x) * scale


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            return self.fc(x)
        return self.fc(-x)


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)) * 2)


class MyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) ** 2


class MyReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) - 1


class MyMLP(sl.nn.MLP):
    def forward(self, *xs):
        return 2 * super().forward(*xs)


def _hooked() -> nn.Module:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    m[2].register_forward_hook(lambda mod, i, o: 2 * o)
    return m


def _pre_hooked() -> nn.Module:
    m = sl.nn.MLP([4, 4, 2])
    m.register_forward_pre_hook(lambda mod, i: (2 * i[0],))
    return m


def _instance_forward() -> nn.Module:
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    plain = m[0].forward
    m[0].forward = lambda x: plain(x) + 1  # type: ignore[method-assign]
    return m


REFUSED = {
    "gelu MLP": lambda: sl.nn.MLP([4, 4, 2], activation="gelu"),
    "layernorm MLP": lambda: sl.nn.MLP([4, 4, 2], norm="layernorm"),
    "residual MLP": lambda: sl.nn.MLP([4, 4, 4, 2], residual=True),
    "MLP subclass with its own forward": lambda: MyMLP([4, 4, 2]),
    "Linear subclass": lambda: nn.Sequential(MyLinear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
    "ReLU subclass": lambda: nn.Sequential(nn.Linear(4, 4), MyReLU(), nn.Linear(4, 2)),
    "ReLU on the input": lambda: nn.Sequential(nn.ReLU(), nn.Linear(4, 2)),
    "two ReLUs": lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.ReLU()),
    "dropout": lambda: nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0), nn.Linear(4, 2)),
    "nothing computed": lambda: nn.Sequential(),
    "a Linear's output read twice": Residual,
    "two outputs": ReadTwice,
    "two inputs": TwoInputs,
    "data-dependent control flow": Branchy,
    "an operation between layers": Scaled,
    "a forward hook": _hooked,
    "a forward pre-hook on the model": _pre_hooked,
    "an instance-level forward": _instance_forward,
}


@pytest.mark.parametrize("what", list(REFUSED))
def test_what_is_not_a_chain(what):
    model = REFUSED[what]().eval()
    assert find_chain(model) is None, what


def test_a_global_hook_refuses_every_chain():
    model = sl.nn.MLP([4, 4, 2])
    assert find_chain(model) is not None
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        assert find_chain(model) is None
    finally:
        handle.remove()


def test_refused_models_still_get_their_own_curve():
    """A hook that changes the output: the curve is the hooked model's, not a chain's."""
    a, b = _hooked(), _hooked()
    x, y = xy(d=4, k=2)
    curve = interpolate(a, b, (x, y), n_alphas=5)
    ref = plain_curve(a, b, x, y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-5, atol=1e-6)


def test_a_chain_that_disagrees_on_the_first_block_is_not_used(monkeypatch):
    """Negative control for the bitwise check: a chain missing its ReLUs computes something
    else, so per_alpha must fall back to the model's own forward."""
    a, b = sl.nn.MLP([6, 8, 8, 3], seed=0), sl.nn.MLP([6, 8, 8, 3], seed=1)
    x, y = xy()
    wrong = Chain(tuple((name, False) for name, _ in find_chain(a).steps))
    with torch.no_grad():
        assert not torch.equal(wrong.bind(a)(x), a(x))  # the wrong chain really differs
    monkeypatch.setattr(path_eval, "find_chain", lambda model: wrong)
    curve = interpolate(a, b, (x, y), n_alphas=5)
    ref = plain_curve(a, b, x, y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-5, atol=1e-6)


class Counting(nn.Module):
    """Its forward has a Python side effect, which tracing runs too."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x)


def test_tracing_runs_on_the_scratch_copy_only():
    a, b = Counting(), Counting()
    x, y = xy(d=4, k=2)
    interpolate(a, b, (x, y), n_alphas=3)
    assert a.calls == 2  # interpolate's own input check and probe, nothing from the trace


@pytest.mark.parametrize("case", ["classes", "ignore_index", "soft", "spatial", "empty"])
def test_cross_entropy_sums_match_torch(case):
    """The logsumexp form of the cross-entropy, and F.cross_entropy where it does not apply."""
    g = torch.Generator().manual_seed(0)
    out = 20 * torch.randn(3, 17, 5, generator=g)
    y = torch.randint(0, 5, (17,), generator=g)
    if case == "ignore_index":
        y[3] = -100
    elif case == "soft":
        y = torch.softmax(torch.randn(17, 5, generator=g), 1)
    elif case == "spatial":
        out, y = 20 * torch.randn(3, 4, 5, 6, generator=g), torch.randint(0, 5, (4, 6))
    elif case == "empty":
        out, y = out[:, :0], y[:0]
    sums, correct = loss_terms(out, y, "cross_entropy")
    rows = len(y)
    if rows == 0:
        assert sums.tolist() == [0.0] * 3 and correct.tolist() == [0.0] * 3
        return
    ref = torch.stack(
        [F.cross_entropy(o, y, reduction="none").reshape(rows, -1).mean(-1).sum() for o in out]
    ).double()  # a row's mean over positions, summed over rows
    torch.testing.assert_close(sums, ref, rtol=1e-6, atol=1e-4)
    if case in ("classes", "spatial"):  # a row's share of correct positions, summed
        right = torch.stack(
            [(o.argmax(1) == y).double().reshape(rows, -1).mean(-1).sum() for o in out]
        )
        torch.testing.assert_close(correct, right)


def test_out_of_range_targets_are_named():
    """The logsumexp shortcut never reads past the classes: a target outside them is a named
    DataError (not torch's IndexError), and -100 (ignore_index) adds nothing."""
    out, y = torch.randn(1, 4, 3), torch.tensor([0, 1, 2, 3])
    with pytest.raises(sl.errors.DataError, match="target 3 is not a class index"):
        loss_terms(out, y, "cross_entropy")
    sums, correct = loss_terms(out, torch.tensor([0, 1, 2, -100]), "cross_entropy")
    want = F.cross_entropy(out[0, :3], torch.tensor([0, 1, 2]), reduction="sum")
    torch.testing.assert_close(sums[0], want.double())
    right = (out[0, :3].argmax(1) == torch.tensor([0, 1, 2])).sum()
    assert correct is not None and correct[0].item() == right.item()  # the skipped row: 0


def test_buffered_chain_is_the_same_function_where_the_bits_differ():
    """Wide layers, where MKL's addmm (bias inside the blocked product) and mm + add_ round
    differently: the buffered chain agrees up to float rounding, writes into ``out`` when
    given, and its buffers do not leak into the caller's data."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 600), nn.ReLU(), nn.Linear(600, 600), nn.ReLU())
    model.append(nn.Linear(600, 7))
    chain = find_chain(model)
    x = torch.randn(300, 20)
    x0 = x.clone()
    with torch.no_grad():
        ref = model(x)
        run = chain.bind_buffered(model)
        got = run(x)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        out = torch.empty(300, 7)
        assert run(x, out=out) is out
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        first = run(x[:50]).clone()  # a smaller block reuses the buffers
        torch.testing.assert_close(first, ref[:50], rtol=1e-5, atol=1e-5)
    assert torch.equal(x, x0)


def test_buffered_chain_calls_the_served_layer():
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    chain = find_chain(model)  # read before the engine replaces the first layer's forward
    x = torch.randn(8, 4)
    seen = []
    plain = model[0].forward

    def served(t):
        seen.append(t)
        return plain(t) + 1.0  # recognisably not the layer's own product

    model[0].forward = served  # type: ignore[method-assign]
    with torch.no_grad():
        got = chain.bind_buffered(model, served=model[0])(x)
        want = model[2](torch.relu(plain(x) + 1.0))
    assert len(seen) == 1 and seen[0] is x
    torch.testing.assert_close(got, want)


def test_buffered_chain_writes_the_served_layer_into_its_buffer():
    """With ``into`` the served layer's output goes into the chain's own buffer (or into
    ``out`` when it is the last layer), and the chain goes on from there."""
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    chain = find_chain(model)
    x = torch.randn(8, 4)
    dests = []

    def into(t, dest):
        dests.append(dest)
        return dest.copy_(model[0](t) + 1.0)  # recognisably not the layer's own product

    with torch.no_grad():
        run = chain.bind_buffered(model, model[0], into)
        got = run(x)
        want = model[2](torch.relu(model[0](x) + 1.0))
        torch.testing.assert_close(got, want)
        run(x[:3])
        assert [d.shape for d in dests] == [(8, 5), (3, 5)]
        assert dests[1].data_ptr() == dests[0].data_ptr()  # one buffer, reused
        single = find_chain(nn.Sequential(model[0]))
        out = torch.empty(8, 5)
        assert single.bind_buffered(model, model[0], into)(x, out=out) is out
        assert dests[-1] is out
        torch.testing.assert_close(out, model[0](x) + 1.0)


def test_a_buffered_chain_that_disagrees_is_not_used(monkeypatch):
    """Negative control for the second check: a buffered function computing something else
    (here: twice the output) is dropped, the exact chain runs every α, and the curve is the
    plain one to the bit."""
    a, b = sl.nn.MLP([6, 8, 8, 3], seed=0), sl.nn.MLP([6, 8, 8, 3], seed=1)
    x, y = xy()
    real = Chain.bind_buffered

    def doubled(self, model, *served):
        run = real(self, model, *served)
        return lambda t, out=None: run(t, out).mul_(2.0)

    monkeypatch.setattr(Chain, "bind_buffered", doubled)
    used = []
    checked = path_eval._checked

    def spy(chain, work, xs, served):
        exact, buffered = checked(chain, work, xs, served)
        used.append(buffered is None)
        return exact, buffered

    monkeypatch.setattr(path_eval, "_checked", spy)
    curve = interpolate(a, b, (x, y), n_alphas=5)
    assert used == [True]
    no_chain(monkeypatch)
    plain = interpolate(a, b, (x, y), n_alphas=5)
    assert torch.equal(curve.loss, plain.loss)


@pytest.mark.parametrize("what", ["3-D input", "non-finite output"])
def test_buffered_chain_is_refused_where_it_does_not_apply(what):
    a = sl.nn.MLP([6, 8, 3], seed=0)
    x, _ = xy()
    if what == "3-D input":
        x = x.reshape(8, 12, 6)
    else:
        with torch.no_grad():
            a.get_submodule("head").bias.fill_(float("inf"))
    with torch.no_grad():
        exact, buffered = path_eval._checked(find_chain(a), a, x, None)
    assert exact is not a and buffered is None  # the exact chain still runs


def test_buffered_chain_in_float64():
    a, b = sl.nn.MLP([6, 8, 3], seed=0).double(), sl.nn.MLP([6, 8, 3], seed=1).double()
    x, y = xy()
    x = x.double()
    with torch.no_grad():
        _, buffered = path_eval._checked(find_chain(a), a, x, None)
    assert buffered is not None
    curve = interpolate(a, b, (x, y), n_alphas=5)
    ref = plain_curve(a, b, x, y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-10, atol=1e-12)
