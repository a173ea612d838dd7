"""The model zoo: shapes, seeding, asymmetric masks and presets, reference equivalences."""

import math

import pytest
import torch
from torch import nn

from symlab.nn import FiGLU, WAsymLinear
from symlab.nn.zoo import (
    WASYM_RESNET20_PRESETS,
    AsymPreset,
    FiGLU2d,
    FiGLUResNet20,
    HandAttention,
    ResNet20,
    ResNet50,
    SmallCNN,
    TransformerClassifier,
    WAsymConv2d,
    WAsymResNet20,
    registry,
)

NAMES = registry.names()
NUM_CLASSES = {"mlp": 3, "wasym_mlp": 3, "figlu_mlp": 3}


def _build(name, **kw):
    return registry.get(name, **{**registry.tiny(name), **kw})


def _same(sd_a, sd_b):
    return sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


def test_registry_has_the_zoo():
    wanted = {"cnn", "resnet20", "vgg16", "resnet50", "transformer", "mlp", "wasym_mlp",
              "wasym_resnet20", "figlu_mlp", "figlu_resnet20"}  # fmt: skip
    assert wanted <= set(NAMES)
    with pytest.raises(KeyError, match="no zoo model"):
        registry.get("resnet21")


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape(name):
    net = _build(name, seed=0).eval()
    x = registry.example_input(name, batch=3, **registry.tiny(name))
    assert net(x).shape == (3, NUM_CLASSES.get(name, 10))


@pytest.mark.parametrize("name", NAMES)
def test_seeded_init_is_deterministic_and_leaves_global_rng_alone(name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = _build(name, seed=1).state_dict()
    assert torch.equal(torch.rand(3), expected)  # building did not consume the global stream
    assert _same(a, _build(name, seed=1).state_dict())
    b = _build(name, seed=2).state_dict()
    assert a.keys() == b.keys() and not _same(a, b)


def test_width_multipliers():
    net = ResNet20(width=2)
    assert [net.conv1.out_channels, net.layer2[0].conv1.out_channels, net.head.in_features] == [
        32, 64, 128,
    ]  # fmt: skip
    assert ResNet50(width=0.25).head.in_features == 512  # 2048 · 0.25
    convs = [m for m in ResNet20(width=0.25).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 18 + 2  # stem, 9 blocks × 2, two projection shortcuts


def test_resnet50_matches_torchvision_parameter_count():
    net = ResNet50(num_classes=1000)
    assert sum(p.numel() for p in net.parameters()) == 25_557_032  # torchvision resnet50


def test_small_cnn_pooling_grid_feeds_the_head():
    net = SmallCNN(widths=(2, 3, 5), pool_size=2)
    assert net.head.in_features == 5 * 2 * 2
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert SmallCNN(widths=(2, 3, 5), dims=1, pool_size=2).head.in_features == 5 * 2


def test_norm_none_gives_conv_biases():
    net = ResNet20(width=0.25, norm="none")
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(ValueError, match="unknown norm"):
        ResNet20(norm="layernorm")


def test_transformer_layers_are_initialised_independently():
    net = TransformerClassifier(vocab_size=7, seq_len=4, d_model=8, nhead=2, num_layers=2)
    w0, w1 = (blk.self_attn.in_proj_weight for blk in net.blocks)
    assert not torch.equal(w0, w1)  # nn.TransformerEncoder would deep-copy one layer


def test_hand_attention_equals_multihead_attention():
    torch.manual_seed(0)
    hand = HandAttention(8, num_heads=2).double()
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([hand.q.weight, hand.k.weight, hand.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([hand.q.bias, hand.k.bias, hand.v.bias]))
        mha.out_proj.weight.copy_(hand.o.weight)
        mha.out_proj.bias.copy_(hand.o.bias)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    ref = mha(x, x, x, need_weights=False)[0]
    torch.testing.assert_close(hand(x), ref)
    with torch.no_grad():  # negative control: swapping two heads' queries changes the output
        hand.q.weight.copy_(hand.q.weight.roll(4, dims=0))
    assert not torch.allclose(hand(x), ref)


# -- W-asymmetric convolution -----------------------------------------------------------------


def test_wasym_conv_masks_are_reproducible_and_seeded():
    a, b = WAsymConv2d(3, 6, 3, num_fixed=7, seed=5), WAsymConv2d(3, 6, 3, num_fixed=7, seed=5)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.fixed, b.fixed)
    c = WAsymConv2d(3, 6, 3, num_fixed=7, seed=6)
    assert not torch.equal(a.mask, c.mask)
    assert a.mask.shape == a.fixed.shape == a.weight.shape == (6, 3, 3, 3)
    per_channel = (a.mask == 0).flatten(1).sum(1)
    assert (per_channel == 7).all()
    assert len({tuple(r.tolist()) for r in a.mask.flatten(1)}) > 1  # a subset per channel
    assert ((a.fixed != 0) <= (a.mask == 0)).all()
    shared = WAsymConv2d(3, 6, 3, num_fixed=7, seed=5, shared_mask=True)
    assert (shared.mask == shared.mask[:1]).all()


def test_wasym_conv_fixed_entries_get_zero_gradient():
    conv = WAsymConv2d(2, 4, 3, num_fixed=5, kappa=1.0, padding=1, seed=0)
    conv(torch.randn(3, 2, 6, 6)).pow(2).sum().backward()
    assert (conv.weight.grad[conv.mask == 0] == 0).all()
    assert (conv.weight.grad[conv.mask == 1] != 0).all()
    assert [n for n, p in conv.named_parameters()] == ["weight", "bias"]


def test_wasym_conv_applies_fixed_plus_masked_weight():
    conv = WAsymConv2d(2, 4, 3, num_fixed=5, kappa=2.0, stride=2, padding=1, seed=0)
    ref = nn.Conv2d(2, 4, 3, stride=2, padding=1)
    with torch.no_grad():
        ref.weight.copy_(conv.fixed + conv.mask * conv.weight)
        ref.bias.copy_(conv.bias)
    x = torch.randn(2, 2, 7, 7)
    torch.testing.assert_close(conv(x), ref(x))
    with torch.no_grad():  # the fixed values matter: changing them changes the output
        conv.fixed.mul_(-1)
    assert not torch.allclose(conv(x), ref(x))


def test_figlu2d_is_figlu_on_every_position():
    act2d, act = FiGLU2d(5, seed=3), FiGLU(5, seed=3)
    assert torch.equal(act2d.gate, act.gate)
    x = torch.randn(2, 5, 3, 4)
    expected = act(x.movedim(1, -1)).movedim(-1, 1)
    torch.testing.assert_close(act2d(x), expected)
    assert not torch.allclose(FiGLU2d(5, seed=4)(x), expected)


# -- asymmetric ResNets -------------------------------------------------------------------------


def _role(path):
    if path == "conv1":
        return "stem"
    if path == "head":
        return "head"
    stage = path[len("layer")]
    return f"shortcut{stage}" if ".shortcut." in path else f"stage{stage}"


def _fixed_counts(net):
    counts = {}
    for path, m in net.named_modules():
        if isinstance(m, WAsymConv2d | WAsymLinear):
            per_unit = (m.mask == 0).flatten(1).sum(1).unique().tolist()
            fan_in = m.mask[0].numel()
            counts[path] = (_role(path), fan_in, per_unit)
    return counts


def test_lim_preset_counts_are_applied():
    net = WAsymResNet20(width=1, preset="lim", mask_seed=0)
    counts = _fixed_counts(net)
    assert len(counts) == 1 + 18 + 2 + 1  # every convolution and the head
    preset = WASYM_RESNET20_PRESETS["lim"]
    for path, (role, _, per_unit) in counts.items():
        assert per_unit == [preset.num_fixed[role]], path
    assert {counts[p][2][0] for p in ("conv1", "layer2.1.conv1", "layer3.0.shortcut.0", "head")} \
        == {12, 54, 8}  # fmt: skip
    assert net.head.kappa == net.conv1.kappa == 3.0


def test_fraction_preset_scales_with_width_and_absolute_preset_refuses_tiny_widths():
    net = WAsymResNet20(width=0.25, preset="lim_fraction")
    fractions = WASYM_RESNET20_PRESETS["lim_fraction"].num_fixed
    for path, (role, fan_in, per_unit) in _fixed_counts(net).items():
        assert per_unit == [math.floor(fractions[role] * fan_in + 0.5)], path
    assert _fixed_counts(net)["layer1.0.conv1"][2] == [9]  # 36 of 144 at width 1, 9 of 36 here
    with pytest.raises(ValueError, match="stage2 layer with fan-in 36"):
        WAsymResNet20(width=0.25, preset="lim")
    custom = WAsymResNet20(width=0.25, preset=AsymPreset.uniform(0.5), kappa=0.5)
    assert custom.conv1.num_fixed == 14 and custom.conv1.kappa == 0.5  # round(0.5 · 27)
    with pytest.raises(ValueError, match="missing roles"):
        AsymPreset({"stem": 3})


def test_mask_seed_is_separate_from_init_seed():
    kw = {"width": 0.25, "preset": "lim_fraction"}
    a = WAsymResNet20(seed=0, mask_seed=7, **kw).state_dict()
    b = WAsymResNet20(seed=1, mask_seed=7, **kw).state_dict()
    c = WAsymResNet20(seed=0, mask_seed=8, **kw).state_dict()
    fixed_keys = [k for k in a if k.endswith((".mask", ".fixed"))]
    assert len(fixed_keys) == 2 * 22
    assert all(torch.equal(a[k], b[k]) for k in fixed_keys)  # same architecture
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])  # different init
    assert not torch.equal(a["conv1.mask"], c["conv1.mask"])
    masks = [a[k] for k in fixed_keys if k.startswith("layer1") and k.endswith(".mask")]
    assert not torch.equal(masks[0], masks[1])  # every layer draws its own mask


def test_wasym_resnet_masked_entries_get_zero_gradient():
    net = WAsymResNet20(width=0.25, preset="lim_fraction", mask_seed=2)
    net(torch.randn(4, 3, 8, 8)).pow(2).sum().backward()
    layers = [m for m in net.modules() if isinstance(m, WAsymConv2d | WAsymLinear)]
    assert all((m.weight.grad[m.mask == 0] == 0).all() for m in layers)
    assert all((m.weight.grad[m.mask == 1] != 0).any() for m in layers)


def test_figlu_resnet_replaces_every_relu_with_its_own_gate():
    net = FiGLUResNet20(width=0.25, mask_seed=3)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    gates = [m.gate for m in net.modules() if isinstance(m, FiGLU2d)]
    assert len(gates) == 1 + 9 * 2
    assert not torch.equal(gates[1], gates[2])  # same shape, different seeds
    again = FiGLUResNet20(width=0.25, mask_seed=3, seed=9)
    other_gates = [m.gate for m in again.modules() if isinstance(m, FiGLU2d)]
    assert all(torch.equal(g, h) for g, h in zip(gates, other_gates, strict=True))
    changed = [m.gate for m in FiGLUResNet20(width=0.25, mask_seed=4).modules()
               if isinstance(m, FiGLU2d)]  # fmt: skip
    assert not torch.equal(gates[0], changed[0])
