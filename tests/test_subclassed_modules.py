"""A module is what its forward does: subclasses of registered layers that change forward
(timm's BatchNormAct2d family, weight-standardised convs, a scaled Linear), patched functions
and methods, and hooks are never read as the base class (issue 13, deliverable 0)."""

import pytest
import torch
import torch.nn.functional as F
from timm_like import (
    BatchNormAct2d,
    Conv2dNormActivation,
    FrozenBatchNormAct2d,
    GroupNormAct,
    LayerNormAct2d,
    ScaledStdConv2d,
    StdConv2d,
)
from torch import nn

import symlab as sl
from symlab.frontend.modules import module_op_for, why_not_read


def _x(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double() * 1.5


def _prepared(model, x):
    torch.manual_seed(0)
    model = model.double()
    with torch.no_grad():  # generic running statistics, then eval
        model.train()
        model(x * 1.3 + 0.4)
    return model.eval()


def _sound(model, x, brute=False):
    model = _prepared(model, x)
    G = sl.symmetries(model, x)
    rep = sl.check_invariance(model, G, x, samples=8, seed=3, raise_on_failure=False)
    assert rep.passed, rep
    if brute:
        _, extra = sl.brute_force_group(model, x).compare(G)
        assert not extra.permutations and not extra.signs
    return G


class _Between(nn.Module):
    """conv → layer → conv (the layer under test between two convolutions)."""

    def __init__(self, layer, c=3, act=None):
        super().__init__()
        self.c1, self.layer, self.c2 = nn.Conv2d(2, c, 3, padding=1), layer, nn.Conv2d(c, 2, 1)
        self.act = act

    def forward(self, x):
        h = self.c1(x)
        h = self.layer(h if self.act is None else self.act(h))
        return self.c2(h if self.act is None else self.act(h))


@pytest.mark.parametrize(
    "make",
    [
        lambda: BatchNormAct2d(3),
        lambda: BatchNormAct2d(3, act_layer=nn.Tanh, inplace=False),
        lambda: BatchNormAct2d(3, act_layer=nn.SiLU),
        lambda: GroupNormAct(3, num_groups=1),
        lambda: GroupNormAct(4, num_groups=2, act_layer=nn.GELU, inplace=False),
    ],
    ids=["bnact-relu", "bnact-tanh", "bnact-silu", "gnact-1", "gnact-2"],
)
def test_timm_norm_act_layers_are_traced_into_and_sound(make):
    layer = make()
    assert module_op_for(layer) is None and "forward" in why_not_read(layer)
    G = _sound(_Between(layer, c=layer.num_features if hasattr(layer, "num_features")
                        else layer.num_channels), _x(4, 2, 5, 5))  # fmt: skip
    assert G.order > 1


@pytest.mark.parametrize(
    "make", [lambda: FrozenBatchNormAct2d(3), lambda: LayerNormAct2d(3, eps=1e-12)]
)
def test_other_timm_norm_act_layers_are_sound_or_refused(make):
    x = _x(4, 2, 5, 5)
    model = _prepared(_Between(make()), x)
    with torch.no_grad():  # generic buffers for the frozen norm
        for name, b in model.named_buffers():
            if name.endswith(("running_var", "weight")):
                b.copy_(torch.rand(b.shape, dtype=b.dtype) + 0.5)
    try:
        G = sl.symmetries(model, x)
    except sl.errors.SymlabError:
        return
    assert sl.check_invariance(model, G, x, samples=8, raise_on_failure=False).passed


def test_bnact_takes_its_activation_into_account():
    """BatchNormAct2d(relu): the norm's output admits positive scales but no signs; a plain
    BatchNorm2d in its place admits signs. Reading the subclass as its base would claim them."""
    act = _sound(_Between(BatchNormAct2d(3)), _x(4, 2, 5, 5), brute=True)
    plain = _sound(_Between(nn.BatchNorm2d(3)), _x(4, 2, 5, 5), brute=True)
    assert "sign" in {f.kind for f in plain.factors}
    out_space = [f for f in act.factors if f.space == "layer" or f.space.startswith("layer")]
    assert "sign" not in {f.kind for f in out_space}


def test_negative_control_the_base_class_group_breaks_a_subclass():
    """The base class's group (signs after the norm) applied to BatchNormAct2d changes its
    outputs: the check can fail, so the subclass handling is what keeps it sound."""
    x = _x(4, 2, 5, 5)
    sub = _prepared(_Between(BatchNormAct2d(3)), x)
    base = _prepared(_Between(nn.BatchNorm2d(3)), x)
    base.load_state_dict(sub.state_dict())
    G_base = sl.symmetries(base, x)
    rep = sl.check_invariance(sub, G_base, x, samples=8, raise_on_failure=False)
    assert not rep.passed


@pytest.mark.parametrize("cls", [StdConv2d, ScaledStdConv2d])
@pytest.mark.parametrize("act", [None, nn.ReLU(), nn.Tanh()], ids=["none", "relu", "tanh"])
def test_weight_standardised_convs_are_derived_and_sound(cls, act):
    conv = cls(3, 3, 3)
    assert module_op_for(conv) is None
    G = _sound(_Between(conv, act=act), _x(4, 2, 5, 5), brute=True)
    node = G.graph.node("layer")
    assert node.op == "std_conv"


def test_torchvision_conv_norm_activation_is_sound():
    net = nn.Sequential(
        Conv2dNormActivation(2, 3), Conv2dNormActivation(3, 2, activation_layer=None)
    )
    G = _sound(net, _x(4, 2, 5, 5))
    assert G.order > 1


class _ScaledLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 0.5


class _ShiftedLinear(nn.Linear):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.offset = nn.Parameter(torch.randn(self.out_features))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + self.offset.relu()


class _BNThenAct(nn.BatchNorm1d):
    def forward(self, x):
        return torch.sigmoid(super().forward(x))


class _NamedLinear(nn.Linear):
    """Only adds a method: still a Linear."""

    def describe(self):
        return "named"


@pytest.mark.parametrize(
    "layer",
    [_ScaledLinear(3, 3), _ShiftedLinear(3, 3), _BNThenAct(3), _NamedLinear(3, 3)],
    ids=["scaled", "shifted", "bn-sigmoid", "named"],
)
def test_subclasses_that_change_forward_derive_a_sound_group_or_refuse(layer):
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), layer, nn.Tanh(), nn.Linear(3, 2))
    x = _x(16, 3)
    net = _prepared(net, x)
    try:
        G = sl.symmetries(net, x)
    except sl.errors.SymlabError as e:
        assert "rule" in str(e) or "supported" in str(e)
        return
    assert sl.check_invariance(net, G, x, samples=8, raise_on_failure=False).passed
    assert (module_op_for(layer) is not None) == isinstance(layer, _NamedLinear)


def test_hooks_are_refused():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    handle = net[0].register_forward_hook(lambda m, i, o: 2 * o + 1)
    with pytest.raises(sl.errors.UnsupportedOpError, match="hooks"):
        sl.symmetries(net, _x(4, 3))
    handle.remove()
    assert sl.symmetries(net, _x(4, 3)).order > 1


def test_an_instance_forward_patch_is_traced_not_read():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    relu = net[1]
    relu.forward = lambda x: torch.tanh(x)  # the instance computes tanh now
    assert module_op_for(relu) is None
    x = _x(16, 3)
    G = sl.symmetries(net, x)
    assert "sign" in {f.kind for f in G.factors}
    assert sl.check_invariance(net, G, x, raise_on_failure=False).passed


def test_a_patched_library_function_is_not_read_as_the_original(monkeypatch):
    """``F.relu`` replaced by a wrapper: ``nn.ReLU`` no longer computes relu."""
    original = F.relu
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: original(x) - 0.5 * x)
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    assert "relu" in why_not_read(net[1])
    x = _x(16, 3)
    try:
        G = sl.symmetries(net, x)
    except sl.errors.SymlabError:
        return
    assert sl.check_invariance(net, G, x, raise_on_failure=False).passed


def test_a_parametrized_weight_is_not_a_plain_linear():
    from torch.nn.utils import parametrize

    class Doubled(nn.Module):
        def forward(self, w):
            return 2 * w.tanh()

    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double().eval()
    parametrize.register_parametrization(net[0], "weight", Doubled())
    assert module_op_for(net[0]) is None
    with pytest.raises(sl.errors.SymlabError):
        sl.symmetries(net, _x(4, 3))


def test_real_timm_layers_when_installed():
    from symlab.testing._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()  # timm imports torchvision (whatever ran before this test)
    timm_layers = pytest.importorskip("timm.layers")
    for layer in (timm_layers.BatchNormAct2d(3), timm_layers.ScaledStdConv2d(3, 3, 3)):
        _sound(_Between(layer, act=nn.ReLU()), _x(4, 2, 5, 5))


def test_real_torchvision_conv_norm_activation_when_installed():
    from symlab.testing._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    misc = pytest.importorskip("torchvision.ops.misc")
    net = nn.Sequential(misc.Conv2dNormActivation(2, 3), misc.Conv2dNormActivation(3, 2))
    _sound(net, _x(4, 2, 5, 5))
