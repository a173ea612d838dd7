"""Vision models as timm and torchvision write them: stochastic depth in eval mode, Swin's
fx-wrapped functions, layers reading a tensor whose units lie on another axis (a channel
shuffle), and concatenations normalised per channel (DenseNet, DPN, CSP) — each on a
hand-written miniature, proved against the real forward, with negative controls; then a small
sample of the real libraries' models through the census."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import symlab as sl
from symlab.errors import UnsupportedOpError
from symlab.seeding import generator
from symlab.testing._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()
torchvision = pytest.importorskip("torchvision")
from torchvision.ops import StochasticDepth  # noqa: E402


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.eps = 1e-30
    return model


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 4)
        self.drop = StochasticDepth(0.3, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(torch.relu(self.fc1(x))))


def test_stochastic_depth_is_the_identity_in_eval_mode() -> None:
    net = _Residual().double().eval()
    x = _x(5, 4)
    G = sl.symmetries(net, x)
    assert G.log10_order > 2  # the 6 hidden units permute (6! > 100)
    assert sl.check_invariance(net, G, x, samples=16).passed
    trained = _Residual().double().train()
    with pytest.raises(UnsupportedOpError, match="stochastic_depth"):
        sl.symmetries(trained, x)  # random noise in training mode: refused, never identity


def test_a_look_alike_of_a_library_function_is_not_read() -> None:
    from torchvision.ops import stochastic_depth

    from symlab.frontend.library_calls import library_reader

    assert library_reader(stochastic_depth) is not None

    def fake(input, p, mode, training=True):
        return input * 2

    fake.__module__, fake.__name__ = stochastic_depth.__module__, "stochastic_depth"
    assert library_reader(fake) is None


class _Shuffle(nn.Module):
    """ShuffleNet's channel shuffle between two 1 × 1 convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 5, 1)
        self.c = nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        n, c, hh, ww = h.shape
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).contiguous().view(n, c, hh, ww)
        return self.c(torch.relu(self.b(h)))


def test_a_layer_reading_units_on_another_axis_reads_them_fixed() -> None:
    """The shuffled tensor's units are not whole channels: ``a``'s units are fixed (not
    refused), ``b``'s hidden units still permute — and the group is proved on the model."""
    net = _Shuffle().double().eval()
    x = _x(2, 3, 4, 4)
    G = sl.symmetries(net, x)
    assert G.log10_order >= 2  # 5! from b's output units
    assert sl.check_invariance(net, G, x, samples=16).passed
    g = generator(0)
    moved = G.act(G.sample(g), net.state_dict())
    assert torch.equal(moved["a.weight"], net.a.weight)  # a's units are fixed
    assert not torch.equal(moved["b.weight"], net.b.weight)


class _Dense(nn.Module):
    """A DenseNet layer: the concatenation of the input and a branch, normalised per channel
    (eval-mode BatchNorm), then a 1 × 1 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.branch = nn.Conv2d(4, 3, 1)
        self.norm = nn.BatchNorm2d(7)
        self.head = nn.Conv2d(7, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        y = torch.cat([h, torch.relu(self.branch(h))], 1)
        return self.head(torch.relu(self.norm(y)))


def test_a_concatenation_normalised_per_channel_is_derived_and_sound() -> None:
    net = _randomise_bn(_Dense()).double().eval()
    x = _x(2, 3, 5, 5)
    G = sl.symmetries(net, x)
    assert G.log10_order > 2  # 4! × 3! permutations (with positive scalings)
    report = sl.check_invariance(net, G, x, samples=32)
    assert report.passed, report
    # negative control: the batch norm's statistics must move with the parts' units
    sd = net.state_dict()
    moved = dict(G.act(G.sample(generator(1)), sd))
    assert not torch.equal(moved["norm.running_mean"], sd["norm.running_mean"])
    moved["norm.running_mean"] = sd["norm.running_mean"]
    ref = net(x)
    out = torch.func.functional_call(net, moved, (x,))
    assert not torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("torchvision", "shufflenet_v2_x0_5"),
        ("torchvision", "efficientnet_b0"),
        ("timm", "cs3darknet_s"),
    ],
)
def test_real_vision_models_are_derived_and_sound(family: str, name: str) -> None:
    from symlab.testing.zoo_report import model_zoo_report

    report = model_zoo_report([family], names=[name], samples=2, time_limit=None)
    assert [r.outcome for r in report.results] == ["derived and sound"], report.table()


class _CachesBias(nn.Module):
    """timm's EfficientViT (MSRA) caches a tensor computed from a parameter on its first
    eval-mode call, in a dict attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)
        self.bias = nn.Parameter(torch.randn(4))
        self.cache: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "b" not in self.cache:
            self.cache["b"] = self.bias * 2
        return self.fc2(torch.relu(self.fc1(x)) + self.cache["b"])


def test_tracing_leaves_no_proxy_or_fake_tensor_in_the_model() -> None:
    net = _CachesBias().double().eval()
    x = _x(5, 3)
    G = sl.symmetries(net, x)
    assert net.cache == {}  # filled while tracing (a proxy), emptied again
    assert sl.check_invariance(net, G, x, samples=8).passed
    assert type(net(x)) is torch.Tensor and type(net.cache["b"]) is torch.Tensor


class _DenseLN(nn.Module):
    """RDNet's dense layer: a concatenation, a depthwise convolution, a LayerNorm over the
    channels (one scale common to the whole concatenation), a 1 × 1 convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.norm = nn.LayerNorm(6, eps=1e-30)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1))
        return self.head(self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_a_scale_common_to_a_concatenation_is_not_one_per_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A LayerNorm divides out one scale common to all its channels; after a concatenation the
    parts move alone, so that scale is not derived — and the negative control shows that
    giving each part its own "common" scale is caught by the check."""
    net = _DenseLN().double().eval()
    x = _x(2, 3, 4, 4)
    G = sl.symmetries(net, x)
    assert G.log10_order > 1.6  # 4! × 2! permutations
    assert sl.check_invariance(net, G, x, samples=32).passed
    from symlab.symmetry import derive

    monkeypatch.setattr(derive, "_per_part", lambda adm, n: adm)
    bad = sl.symmetries(net, x)
    assert not sl.check_invariance(net, bad, x, samples=32, raise_on_failure=False).passed


class _MisalignedSum(nn.Module):
    """MixNet's residual: the sum of two concatenations split differently (4 + 2 and 3 + 3
    channels): no map of the parts lines up, so they are fixed; the head's units still move."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 2, 1)
        self.c, self.d = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        self.hidden, self.head = nn.Conv2d(6, 5, 1), nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], 1) + torch.cat([self.c(x), self.d(x)], 1)
        return self.head(torch.relu(self.hidden(y)))


def test_concatenations_split_differently_are_fixed_not_refused() -> None:
    net = _MisalignedSum().double().eval()
    x = _x(2, 3, 4, 4)
    G = sl.symmetries(net, x)
    assert G.log10_order >= 2  # 5! hidden units
    assert sl.check_invariance(net, G, x, samples=16).passed
    moved = G.act(G.sample(generator(0)), net.state_dict())
    for k in ("a.weight", "b.weight", "c.weight", "d.weight"):
        assert torch.equal(moved[k], net.state_dict()[k]), k


class _Renormalised(nn.Module):
    """An in-place write (``h *= 2``, as ConViT's ``attn /= attn.sum(-1).unsqueeze(-1)``) of a
    tensor another op read before the write; the shape check sends it to torch.export."""

    def __init__(self, read_after: bool = False) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 4), nn.Linear(4, 2), nn.Linear(4, 2)
        self.read_after = read_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != 3:  # torch.fx cannot branch on a size: torch.export reads it
            raise ValueError("three features")
        h = self.a(x)
        view = h[:, :2] if self.read_after else None
        s = torch.relu(h)  # read before the write, a fresh tensor
        h *= 2.0
        out = self.b(torch.relu(h)) + self.c(s)
        return out if view is None else out + view.sum()


def test_an_in_place_write_read_only_before_it_is_read_out_of_place() -> None:
    x = _x(5, 3)
    net = _Renormalised().double().eval()
    g = sl.trace(net, x)
    assert g.frontend == "torch.export"
    G = sl.symmetries(net, x)
    assert G.log10_order > 1  # 4! permutations of the hidden units
    assert sl.check_invariance(net, G, x, samples=16).passed
    with pytest.raises(UnsupportedOpError, match="in-place op"):  # a view sees the write later
        sl.symmetries(_Renormalised(read_after=True).double().eval(), x)


class _PoolOverUnits(nn.Module):
    """A pooling function whose window runs over the axis that holds the units (mixing them):
    ``(B, 1, 4)`` pooled along its last axis, to the same width."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x)).unsqueeze(1)
        return self.b(F.avg_pool1d(h, 3, stride=1, padding=1).flatten(1))


class _Upsampled(nn.Module):
    """CoaT's and FPN-style ``F.interpolate`` of a feature map: per channel, positions only."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(torch.relu(self.a(x)), scale_factor=2.0, mode="bilinear")
        return self.b(h)


def test_pooling_over_the_units_fixes_them_and_interpolation_keeps_them() -> None:
    x = _x(5, 3)
    net = _PoolOverUnits().double().eval()
    G = sl.symmetries(net, x)  # was S_4 × scales: unsound (the window mixes a's units)
    assert G.log10_order == 0
    assert sl.check_invariance(net, G, x, samples=8).passed
    up = _Upsampled().double().eval()
    x = _x(2, 3, 4, 4)
    G = sl.symmetries(up, x)
    assert G.log10_order > 1  # 4! permutations (and positive scales) of a's channels
    assert sl.check_invariance(up, G, x, samples=16).passed


class _Aliased(nn.Module):
    """CoaT's ``self.mlp2 = self.mlp3 = self.mlp4 = Mlp(...)``: one module under several names,
    the forward calling it under one of them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = self.alias = nn.Linear(3, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def test_names_of_one_parameter_the_forward_never_reads_move_with_it() -> None:
    net = _Aliased().double().eval()
    x = _x(5, 3)
    ref = net(x).detach()
    G = sl.symmetries(net, x)
    assert ("fc1.weight", "alias.weight") in G.graph.tied_keys
    moved = G.act(G.sample(generator(0)), net.state_dict())
    assert not torch.equal(moved["fc1.weight"], net.fc1.weight)
    assert torch.equal(moved["alias.weight"], moved["fc1.weight"])  # one parameter, one value
    fresh = _Aliased().double()
    fresh.load_state_dict(moved)  # the last name loaded wins: it must be the moved tensor
    assert torch.allclose(fresh(x), ref, atol=1e-10)
    assert sl.check_invariance(net, G, x, samples=8).passed
