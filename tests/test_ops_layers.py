"""Channel ops between convolutions (issue 13, deliverable 4): per-channel PReLU, transposed
convolutions, pixel (un)shuffle, GLU, padding, flips and the elementwise ops on feature maps —
each derived before every consumer conv shape and a flatten, checked on sampled elements,
compared with brute force both ways, read the same through torch.export; with refusals and
negative controls."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ops_contexts import CONV_CONTEXTS, inputs, kinds, model, prove, same_through_export
from torch import nn

import symlab as sl
from symlab.errors import UnsupportedOpError


class Fn(nn.Module):
    def __init__(self, f) -> None:
        super().__init__()
        self.f = f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class Then(nn.Module):
    """``second(first(x))``: an op followed by another."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def _fn(f):
    return lambda n: Fn(f)


#: op name → (factory, layout, stem width, group right after the stem conv)
CONV_OPS = {
    "prelu_channels": (lambda n: nn.PReLU(n), "conv1d", 3, ["S_3", "R_{>0}^3"]),
    "prelu_scalar": (lambda n: nn.PReLU(), "conv1d", 3, ["S_3", "R_{>0}^3"]),
    "abs": (_fn(torch.abs), "conv1d", 3, ["S_3", "R_{>0}^3"]),
    "square": (_fn(torch.square), "conv1d", 3, ["S_3", "{±1}^3"]),
    "clamp_sym": (_fn(lambda x: x.clamp(-1, 1)), "conv1d", 3, ["S_3", "{±1}^3"]),
    "exp": (_fn(torch.exp), "conv1d", 3, ["S_3"]),
    "neg": (_fn(torch.neg), "conv1d", 3, ["GL_3"]),
    "pad_zero": (_fn(lambda x: F.pad(x, (1, 2))), "conv1d", 3, ["GL_3"]),
    "pad_reflect": (_fn(lambda x: F.pad(x, (2, 1), mode="reflect")), "conv1d", 3, ["GL_3"]),
    "pad_replicate": (_fn(lambda x: F.pad(x, (1, 1), mode="replicate")), "conv1d", 3, ["GL_3"]),
    "pad_circular": (_fn(lambda x: F.pad(x, (1, 1), mode="circular")), "conv1d", 3, ["GL_3"]),
    "pad_value": (_fn(lambda x: F.pad(x, (1, 1), value=1.0)), "conv1d", 3, ["S_3"]),
    "zero_pad_module": (lambda n: nn.ZeroPad1d(2), "conv1d", 3, ["GL_3"]),
    "flip": (_fn(lambda x: torch.flip(x, [-1])), "conv1d", 3, ["GL_3"]),
    "roll": (_fn(lambda x: torch.roll(x, 2, -1)), "conv1d", 3, ["GL_3"]),
    "max_positions": (_fn(lambda x: x.amax(-1, keepdim=True)), "conv1d", 3, ["S_3", "R_{>0}^3"]),
    "glu_channels": (lambda n: Fn(lambda x: F.glu(x, 1)), "conv1d", 4, ["S_2", "R_{>0}^2",
                                                                         "{±1}^2"]),
    "conv_transpose": (lambda n: nn.ConvTranspose1d(n, 3, 3, stride=2), "conv1d", 3,
                       ["GL_3", "GL_3"]),
    "conv_transpose_relu": (lambda n: Then(nn.ConvTranspose1d(n, 3, 2, stride=2, bias=False),
                                           nn.ReLU()), "conv1d", 3, ["GL_3", "S_3", "R_{>0}^3"]),
    "conv_transpose_grouped": (lambda n: nn.ConvTranspose1d(n, n, 3, groups=n), "conv1d", 3, []),
    "conv_transpose_2d": (lambda n: nn.ConvTranspose2d(n, 2, 2, stride=2), "conv2d", 3,
                          ["GL_3", "GL_2"]),
    "pixel_shuffle": (lambda n: nn.PixelShuffle(2), "conv2d", 8, ["GL_2"]),
    "pixel_shuffle_relu": (lambda n: Then(nn.PixelShuffle(2), nn.ReLU()), "conv2d", 8,
                           ["S_2", "R_{>0}^2"]),
    "pixel_shuffle_fn": (_fn(lambda x: torch.tanh(F.pixel_shuffle(x, 2))), "conv2d", 8,
                         ["S_2", "{±1}^2"]),
    "pixel_shuffle_after_tanh": (_fn(lambda x: F.pixel_shuffle(torch.tanh(x), 2)), "conv2d", 8,
                                 []),  # the shuffled tensor is no space of its own: fixed
    "pixel_unshuffle": (lambda n: Then(nn.PixelUnshuffle(2), nn.Tanh()), "conv2d", 2,
                        ["S_2", "{±1}^2"]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONV_OPS))
def test_group_on_channels(name: str) -> None:
    make, layout, n, expected = CONV_OPS[name]
    G = prove(model("k1", make, n, layout), inputs(layout))
    assert kinds(G) == expected


@pytest.mark.parametrize("context", CONV_CONTEXTS[1:])
@pytest.mark.parametrize("name", sorted(CONV_OPS))
def test_sound_and_complete_before_every_consumer(name: str, context: str) -> None:
    make, layout, n, _ = CONV_OPS[name]
    if context == "k3" and name in ("max_positions", "pixel_unshuffle"):
        pytest.skip("too few positions left for an unpadded 3-wide conv")
    prove(model(context, make, n, layout), inputs(layout), brute=context != "flatten")


@pytest.mark.parametrize("name", sorted(CONV_OPS))
def test_same_group_through_torch_export(name: str) -> None:
    make, layout, n, _ = CONV_OPS[name]
    same_through_export(model("k3pad", make, n, layout), inputs(layout))


# -- refusals and negative controls -----------------------------------------------------------


def test_per_channel_prelu_off_the_channel_axis_is_refused() -> None:
    """``PReLU(n)`` applies its slopes along axis 1; on features-last ``(B, n, n)`` tensors
    torch runs it, but the slopes do not follow the units: refused, not guessed."""
    net = nn.Sequential(nn.Linear(3, 4), nn.PReLU(4), nn.Linear(4, 2)).double()
    with pytest.raises(UnsupportedOpError, match="slopes applies them along axis 1"):
        sl.symmetries(net, torch.randn(2, 4, 3, dtype=torch.float64))


def test_prelu_slopes_must_move_with_their_channels() -> None:
    """Negative control: permuting the channels but not the slopes changes the outputs."""
    net = model("k1", CONV_OPS["prelu_channels"][0], 3, "conv1d")
    with torch.no_grad():
        net.op.weight.copy_(torch.tensor([0.1, 0.5, 0.9]))
    x = inputs("conv1d")
    G = prove(net, x, brute=False)
    sd = G.act(G.sample(3), net.state_dict())
    assert not torch.equal(sd["op.weight"], net.state_dict()["op.weight"])  # the slopes moved
    p = torch.tensor([1, 2, 0])
    bad = dict(net.state_dict())
    bad["stem.weight"], bad["stem.bias"] = bad["stem.weight"][p], bad["stem.bias"][p]
    bad["head.weight"] = bad["head.weight"][:, p]
    out = torch.func.functional_call(net, bad, (x,))
    assert not torch.allclose(out, net(x), atol=1e-6)


def test_pixel_shuffle_blocks_must_move_whole() -> None:
    """Negative control: permuting single input channels of a pixel shuffle (not whole blocks
    of r² channels) changes the outputs; the derived group moves whole blocks."""
    net = model("k1", CONV_OPS["pixel_shuffle"][0], 8, "conv2d")
    x = inputs("conv2d")
    G = prove(net, x, brute=False)
    (gl,) = G.factors
    assert int(gl.size) == 2 and {k for k, _ in gl.axes} >= {"stem.weight", "head.weight"}
    p = torch.tensor([1, 0, 2, 3, 4, 5, 6, 7])  # two channels of one block swapped
    bad = dict(net.state_dict())
    bad["stem.weight"], bad["stem.bias"] = bad["stem.weight"][p], bad["stem.bias"][p]
    out = torch.func.functional_call(net, bad, (x,))
    assert not torch.allclose(out, net(x), atol=1e-6)


def test_pixel_shuffle_of_a_shared_tensor_is_fixed() -> None:
    """Where the shuffled tensor is read elsewhere too, both sides stay fixed (sound)."""

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(2, 4, 1)
            self.head = nn.Conv2d(1, 2, 1)
            self.side = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            return self.head(F.pixel_shuffle(h, 2)).mean((2, 3)) + self.side(h).mean((2, 3))

    net = Two().double()
    x = inputs("conv2d")
    G = prove(net, x)
    assert kinds(G) == []


def test_conv_transpose_does_not_absorb_a_sigmoid_flip() -> None:
    """A constant input gives a non-constant transposed-conv output near the borders, so a
    sigmoid's flip before it is not derived (and would change the outputs)."""
    make = lambda n: Then(nn.Sigmoid(), nn.ConvTranspose1d(n, 2, 3))  # noqa: E731
    net = model("k1", make, 3, "conv1d")
    x = inputs("conv1d")
    G = prove(net, x)
    assert "flip" not in {f.kind for f in G.factors}
    sd = dict(net.state_dict())  # flip unit 0 by hand: σ(-z) = 1 - σ(z), bias compensated
    sd["stem.weight"], sd["stem.bias"] = sd["stem.weight"].clone(), sd["stem.bias"].clone()
    sd["stem.weight"][0] *= -1
    sd["stem.bias"][0] *= -1
    w = sd["op.second.weight"].clone()
    sd["op.second.bias"] = sd["op.second.bias"] + w[0].sum(-1)
    w[0] *= -1
    sd["op.second.weight"] = w
    out = torch.func.functional_call(net, sd, (x,))
    assert not torch.allclose(out, net(x), atol=1e-6)
