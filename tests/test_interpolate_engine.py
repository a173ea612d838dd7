"""The interpolation engine (symlab.connect.path_eval): the first-layer shortcut, parameters
built per α, and what interpolate refuses (α outside [0, 1], non-finite parameters)."""

from __future__ import annotations

import copy

import pytest
import torch
from curve_util import plain_curve, xy
from torch import nn
from torch.nn import functional as F

import symlab as sl
from symlab.connect import interpolate
from symlab.connect.path_eval import FirstLayer, probe_model
from symlab.errors import DataError, NonFiniteError


class ScaledInput(nn.Module):
    """Its first Linear reads 2·x, not x: the shortcut must not apply."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin, self.head = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.lin(2 * x)))


class MyLinear(nn.Linear):
    """A subclass whose forward differs: not an nn.Linear for the shortcut."""

    def forward(self, x):
        return super().forward(x) ** 2


class Mutating(nn.Module):
    """Changes its input in place before the first Linear reads it."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin, self.head = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        x.mul_(1.0)  # bumps the version counter even though the values stay
        return self.head(torch.relu(self.lin(x)))


@pytest.mark.parametrize("batch_size", [None, 40, "blocks"])
def test_shortcut_curve_equals_plain_computation(batch_size, monkeypatch):
    a, b = sl.nn.MLP([6, 16, 16, 3], seed=0), sl.nn.MLP([6, 16, 16, 3], seed=1)
    x, y = xy(n=200)
    if batch_size == "blocks":  # default row blocks of 64 rows: 200 rows in 4 blocks
        monkeypatch.setattr("symlab.connect.path_eval.BLOCK_BYTES", 64 * 16 * 4)
        seen = []
        a.register_forward_pre_hook(lambda m, inp: seen.append(len(inp[0])))
        batch_size = None
    else:
        seen = None
    assert probe_model(a, x[:1]).first_linear is a.get_submodule("layers.0.linear")
    curve = interpolate(a, b, (x, y), n_alphas=9, batch_size=batch_size)
    if seen is not None:  # the scratch copy keeps a's hook: the last α ran in 4 blocks
        assert seen[-4:] == [64, 64, 64, 8]
    ref = plain_curve(a, b, x, y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-5, atol=0)
    with torch.no_grad():  # endpoints: the models' own losses, to the last bit of float32
        assert curve.loss[0].item() == pytest.approx(F.cross_entropy(a(x), y).item(), rel=1e-7)
        assert curve.loss[-1].item() == pytest.approx(F.cross_entropy(b(x), y).item(), rel=1e-7)
    vm = interpolate(a, b, (x, y), n_alphas=9, strategy="vmap")  # the stacked engine agrees
    torch.testing.assert_close(vm.loss, curve.loss, rtol=1e-5, atol=1e-7)
    assert "forward" not in a.get_submodule("layers.0.linear").__dict__  # model_a untouched


def test_shortcut_is_refused_where_it_would_be_wrong():
    x, y = xy()
    a, b = ScaledInput(0), ScaledInput(1)
    assert probe_model(a, x[:1]).first_linear is None  # it reads 2·x
    curve = interpolate(a, b, (x, y), n_alphas=5)
    ref = plain_curve(a, b, x, y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-5, atol=0)
    sub = nn.Sequential(MyLinear(6, 3))
    assert probe_model(sub, x[:1]).first_linear is None  # a subclass is not nn.Linear


def _served(alpha: float):
    """A FirstLayer serving a copy of ``Mutating(0).lin`` towards ``Mutating(1)`` at ``alpha``
    for one block (a copy of the inputs ``x``)."""
    x, y = xy()
    a, b = Mutating(0), Mutating(1)
    layer = copy.deepcopy(a).lin
    block = x.clone()
    serve = FirstLayer(
        layer, ("lin.weight", "lin.bias"), a.state_dict(), b.state_dict(), [(block, y)]
    )
    serve.alpha = alpha
    return x, y, a, b, layer, block, serve


def test_first_layer_falls_back_on_a_changed_input():
    """Negative control: served products are only used for the untouched block they came from."""
    x, y, a, b, layer, block, serve = _served(1.0)
    with torch.no_grad():
        torch.testing.assert_close(layer(block), b.lin(block), rtol=0, atol=0)  # served: B's
        block.mul_(1.0)
        torch.testing.assert_close(layer(block), a.lin(block))  # plain again: A's weights
        torch.testing.assert_close(layer(x.clone()), a.lin(x))  # another tensor: plain
    serve.close()
    assert "forward" not in layer.__dict__
    curve = interpolate(a, b, (x.clone(), y), n_alphas=5)
    ref = plain_curve(a, b, x.clone(), y, curve.alphas.tolist())
    torch.testing.assert_close(curve.loss, ref, rtol=1e-5, atol=0)


def test_first_layer_into_a_buffer():
    """``into`` writes what ``forward`` returns into the caller's buffer: the served lerp for
    a prepared block, the plain computation for another tensor or a changed block."""
    x, _, a, _, layer, block, serve = _served(0.3)
    buf = torch.full((len(x), 8), float("nan"))
    with torch.no_grad():
        assert serve.into(block, buf) is buf
        assert torch.equal(buf, serve.forward(block))  # the same lerp, to the bit
        assert not torch.equal(buf, layer(x.clone()))  # served, not the layer's own weights
        other = x.clone()
        assert serve.into(other, buf) is buf
        assert torch.equal(buf, a.lin(x))  # another tensor: the plain computation
        block.mul_(1.0)
        serve.into(block, buf)
        assert torch.equal(buf, a.lin(x))  # changed in place since: plain again
    serve.close()


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_targets_outside_the_classes_are_named(strategy):
    a, b = sl.nn.MLP([6, 8, 3], seed=0), sl.nn.MLP([6, 8, 3], seed=1)
    x, y = xy(n=50, k=3)
    for bad in (3, -1):
        yb = y.clone()
        yb[7] = bad
        with pytest.raises(DataError, match=rf"target {bad} is not a class index.* 3 outputs"):
            interpolate(a, b, (x, yb), n_alphas=3, strategy=strategy)
    yi = y.clone()
    yi[[7, 20]] = -100  # F.cross_entropy's ignore_index: those rows count for nothing
    curve = interpolate(a, b, (x, yi), n_alphas=3, strategy=strategy)
    keep = yi != -100
    with torch.no_grad():
        for i, m in ((0, a), (-1, b)):  # F.cross_entropy's own mean over the kept targets
            assert curve.loss[i].item() == pytest.approx(F.cross_entropy(m(x), yi).item())
            acc = (m(x).argmax(1) == yi)[keep].double().mean().item()
            assert curve.accuracy[i].item() == pytest.approx(acc)
    with pytest.raises(DataError, match="every target is -100"):
        interpolate(a, b, (x, torch.full_like(y, -100)), n_alphas=3, strategy=strategy)


class PerPixel(nn.Module):
    """A 1×1 conv 'segmenter': class scores per position, [B, C, L]."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv1d(2, 3, 1)

    def forward(self, x):
        return self.conv(x)


def test_ignored_positions_of_spatial_targets():
    """Segmentation-style targets with skipped positions: the curve's ends are the models'
    own F.cross_entropy (the mean over kept positions), and so is simplex's corner."""
    a, b = PerPixel(0), PerPixel(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, 5, generator=g), torch.randint(0, 3, (40, 5), generator=g)
    y[:10, :3] = -100  # some rows lose most of their positions, one row all but two
    y[11] = -100
    curve = interpolate(a, b, (x, y), n_alphas=3)
    keep = y != -100
    with torch.no_grad():
        for i, m in ((0, a), (-1, b)):
            assert curve.loss[i].item() == pytest.approx(F.cross_entropy(m(x), y).item())
            acc = (m(x).argmax(1) == y)[keep].double().mean().item()
            assert curve.accuracy[i].item() == pytest.approx(acc)
        grid = sl.connect.simplex([a, b, b], (x, y), resolution=2)
        corner = grid.weights[:, 0] == 1.0  # all of a's weight
        assert grid.loss[corner].item() == pytest.approx(F.cross_entropy(a(x), y).item())


class Standardising(nn.Module):
    """Standardises its input in place (``x.sub_(mean).div_(std)``), as research code does."""

    def __init__(self, seed: int, in_place: bool = True) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.in_place = in_place
        self.lin, self.head = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        if self.in_place:
            x.sub_(0.5).div_(2.0)
        else:
            x = (x - 0.5) / 2.0
        return self.head(torch.relu(self.lin(x)))


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_a_model_writing_into_its_input(strategy):
    """Every α sees the data as given (not standardised once per α), the caller's data stay
    as they were, and the curve is its out-of-place twin's."""
    x, y = xy()
    x0 = x.clone()
    a, b = Standardising(0), Standardising(1)
    curve = interpolate(a, b, (x, y), n_alphas=5, strategy=strategy)
    assert torch.equal(x, x0)
    twin_a, twin_b = Standardising(0, in_place=False), Standardising(1, in_place=False)
    twin = interpolate(twin_a, twin_b, (x, y), n_alphas=5, strategy=strategy)
    torch.testing.assert_close(curve.loss, twin.loss, rtol=1e-6, atol=0)
    with torch.no_grad():  # the endpoint is the model's own loss on the data as given
        want = F.cross_entropy(a(x.clone()), y).item()
    assert curve.loss[0].item() == pytest.approx(want, rel=1e-6)
    assert not a._forward_pre_hooks and not b._forward_pre_hooks  # given back


def test_check_invariance_of_a_model_writing_into_its_input():
    model, x = Standardising(0).double(), xy()[0].double()
    x0 = x.clone()
    G = sl.symmetries(model, x)
    assert {f.kind for f in G.factors} == {"permutation", "scaling"}
    assert sl.check_invariance(model, G, x).passed  # each pass on the data as given
    assert torch.equal(x, x0)


def test_alphas_outside_unit_interval_are_refused():
    a, b = sl.nn.MLP([6, 8, 3], seed=0), sl.nn.MLP([6, 8, 3], seed=1)
    for bad in ([-0.5, 0.0, 1.0], [0.0, 1.0, 1.5], [0.0, float("nan"), 1.0]):
        with pytest.raises(DataError, match=r"\[0, 1\]"):
            interpolate(a, b, xy(), alphas=torch.tensor(bad))
    ok = interpolate(a, b, xy(), alphas=torch.tensor([0.0, 0.5, 1.0]))  # control
    assert len(ok.loss) == 3


@pytest.mark.parametrize("which", ["a", "b"])
def test_nonfinite_parameters_are_named(which):
    a, b = sl.nn.MLP([6, 8, 3], seed=0), sl.nn.MLP([6, 8, 3], seed=1)
    bad = a if which == "a" else b
    with torch.no_grad():
        bad.get_submodule("head").bias[1] = float("nan")
    with pytest.raises(NonFiniteError, match=rf"model_{which} \({which.upper()}\).*head\.bias"):
        interpolate(a, b, xy())
    with torch.no_grad():
        bad.get_submodule("head").bias[1] = float("inf")
    with pytest.raises(NonFiniteError, match="head.bias"):
        interpolate(a, b, xy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_finiteness_check_sees_every_position(dtype):
    # the check reads the extremes (aminmax): a NaN or ±inf anywhere, including the elements
    # after the last full vector register and in transposed or 0-dim tensors, must be seen
    from symlab.connect.interpolate import _finite

    for n in (1, 7, 17, 33, 129):
        for bad in (float("nan"), float("inf"), -float("inf")):
            for pos in range(n):
                t = torch.ones(n, dtype=dtype)
                t[pos] = bad
                assert not _finite(t), (n, bad, pos)
            m = torch.ones(n, 3, dtype=dtype)
            m[n // 2, 1] = bad
            assert not _finite(m.t())
    assert not _finite(torch.tensor(float("nan"), dtype=dtype))
    assert _finite(torch.ones(5, dtype=dtype)) and _finite(torch.empty(0, dtype=dtype))
    big = torch.full((4,), torch.finfo(dtype).max, dtype=dtype)
    assert _finite(big) and _finite(-big)  # the largest finite values are finite
