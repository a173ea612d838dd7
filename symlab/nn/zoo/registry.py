"""The zoo's registry: build any zoo model by name, with an example input and tiny settings.

>>> from symlab.nn.zoo import registry
>>> net = registry.get("resnet20", width=0.25, seed=0)
>>> x = registry.example_input("resnet20", batch=2)
>>> tuple(net(x).shape)
(2, 10)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from symlab.nn.zoo.asym_resnet import FiGLUResNet20, WAsymResNet20
from symlab.nn.zoo.cnn import SmallCNN
from symlab.nn.zoo.resnet import ResNet20
from symlab.nn.zoo.resnet50 import ResNet50
from symlab.nn.zoo.transformer import HandTransformer, TransformerClassifier
from symlab.nn.zoo.vgg import VGG16
from symlab.seeding import generator

__all__ = ["ZooEntry", "entry", "example_input", "get", "names", "tiny"]

#: Git Re-Basin's MNIST MLP widths (and Lim et al.'s).
MNIST_MLP = (784, 512, 512, 512, 10)

InputFn = Callable[[int, torch.Generator, Mapping[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: its factory, how to make an input for it, and tiny test settings.

    >>> e = entry("mlp")
    >>> e.name, dict(e.tiny)
    ('mlp', {'widths': (8, 6, 6, 6, 3)})
    """

    name: str
    factory: Callable[..., nn.Module]
    make_input: InputFn
    tiny: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def _mlp(**kw: Any) -> nn.Module:
    from symlab.nn.mlp import MLP  # imported late: symlab.nn.mlp imports the graph package

    widths = kw.pop("widths", MNIST_MLP)
    return MLP(widths, **kw)


def _wasym_mlp(**kw: Any) -> nn.Module:
    kw.setdefault("activation", "gelu")
    kw.setdefault("norm", "layernorm")
    kw.setdefault("asym", "lim")
    return _mlp(**kw)


def _figlu_mlp(**kw: Any) -> nn.Module:
    kw.setdefault("activation", "figlu")
    kw.setdefault("norm", "layernorm")
    return _mlp(**kw)


def _vector(b: int, g: torch.Generator, kw: Mapping[str, Any]) -> torch.Tensor:
    return torch.randn(b, kw.get("widths", MNIST_MLP)[0], generator=g)


def _image(default_channels: int, size: int) -> InputFn:
    def make(b: int, g: torch.Generator, kw: Mapping[str, Any]) -> torch.Tensor:
        return torch.randn(b, kw.get("in_channels", default_channels), size, size, generator=g)

    return make


def _cnn_input(default_dims: int) -> InputFn:
    def make(b: int, g: torch.Generator, kw: Mapping[str, Any]) -> torch.Tensor:
        c = kw.get("in_channels", 1)
        if kw.get("dims", default_dims) == 1:
            return torch.randn(b, c, 40, generator=g)  # MNIST-1D signals, shaped (N, 1, 40)
        return torch.randn(b, c, 28, 28, generator=g)

    return make


def _tokens(b: int, g: torch.Generator, kw: Mapping[str, Any]) -> torch.Tensor:
    return torch.randint(kw.get("vocab_size", 64), (b, kw.get("seq_len", 16)), generator=g)


def _cnn1d(**kw: Any) -> nn.Module:
    kw.setdefault("dims", 1)
    return SmallCNN(**kw)


_TINY_MLP = {"widths": (8, 6, 6, 6, 3)}
_TINY_TOKENS = {"vocab_size": 11, "seq_len": 5, "d_model": 8, "num_layers": 2}

_ENTRIES: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("mlp", _mlp, _vector, _TINY_MLP,
                 "symlab.nn.MLP; default 784-512-512-512-10 ReLU (Git Re-Basin's MNIST MLP)"),
        ZooEntry("wasym_mlp", _wasym_mlp, _vector,
                 {**_TINY_MLP, "asym": {"num_fixed": 2, "kappa": 1.0}},
                 "W-asymmetric MLP; default Lim et al.'s 784-512-512-512-10, LayerNorm, GELU, "
                 "asym='lim'"),
        ZooEntry("figlu_mlp", _figlu_mlp, _vector, _TINY_MLP,
                 "MLP with FiGLU activations and LayerNorm (Lim et al.'s σ-asymmetric MLP)"),
        ZooEntry("cnn", SmallCNN, _cnn_input(2), {"widths": (4, 6, 6)},
                 "SmallCNN for 1×28×28 images"),
        ZooEntry("cnn1d", _cnn1d, _cnn_input(1), {"widths": (4, 6, 6)},
                 "SmallCNN with Conv1d for MNIST-1D signals shaped (N, 1, 40)"),
        ZooEntry("resnet20", ResNet20, _image(3, 32), {"width": 0.25},
                 "CIFAR ResNet-20 with a width multiplier"),
        ZooEntry("wasym_resnet20", WAsymResNet20, _image(3, 32),
                 {"width": 0.25, "preset": "lim_fraction"},
                 "ResNet-20 with W-asymmetric convolutions (Lim et al. presets)"),
        ZooEntry("figlu_resnet20", FiGLUResNet20, _image(3, 32), {"width": 0.25},
                 "ResNet-20 with channel-wise FiGLU activations"),
        ZooEntry("vgg16", VGG16, _image(3, 32), {"width": 1 / 16},
                 "CIFAR VGG-16 (BatchNorm by default) with a width multiplier"),
        ZooEntry("resnet50", ResNet50, _image(3, 64), {"width": 1 / 16, "num_classes": 10},
                 "ResNet-50 (bottlenecks) with a width multiplier"),
        ZooEntry("transformer", TransformerClassifier, _tokens, {**_TINY_TOKENS, "nhead": 2},
                 "token classifier from nn.TransformerEncoderLayer"),
        ZooEntry("hand_transformer", HandTransformer, _tokens,
                 {**_TINY_TOKENS, "num_heads": 2},
                 "token classifier from hand-written attention blocks"),
    ]
}  # fmt: skip


def names() -> list[str]:
    """The zoo's model names.

    >>> names()[:3]
    ['mlp', 'wasym_mlp', 'figlu_mlp']
    """
    return list(_ENTRIES)


def entry(name: str) -> ZooEntry:
    """The registry entry of ``name``.

    >>> e = entry("resnet20")
    >>> e.name, callable(e.factory), tuple(e.make_input(2, torch.Generator(), {}).shape)
    ('resnet20', True, (2, 3, 32, 32))
    """
    if name not in _ENTRIES:
        raise KeyError(f"no zoo model {name!r}; choose from {names()}")
    return _ENTRIES[name]


def get(name: str, **kw: Any) -> nn.Module:
    """Build zoo model ``name`` with the factory's keyword arguments (``seed=`` among them).

    >>> net = get("mlp", widths=(4, 8, 2), seed=0)
    >>> tuple(net(torch.randn(5, 4)).shape)
    (5, 2)
    """
    return entry(name).factory(**kw)


def tiny(name: str) -> dict[str, Any]:
    """Keyword arguments of a tiny but complete version of ``name`` (for fast tests).

    >>> kw = tiny("resnet20")
    >>> net = get("resnet20", **kw)
    >>> tuple(net(example_input("resnet20", batch=2, **kw)).shape)
    (2, 10)
    """
    return dict(entry(name).tiny)


def example_input(name: str, batch: int = 2, seed: int = 0, **kw: Any) -> torch.Tensor:
    """A seeded input that fits ``get(name, **kw)`` (images, signals, vectors or token ids).

    Image models get a fixed size (32×32 for CIFAR models, 28×28 for the CNN, 64×64
    for ResNet-50, whose adaptive pooling takes any size from 32 up).

    >>> tuple(example_input("mlp", batch=2).shape), tuple(example_input("cnn", batch=2).shape)
    ((2, 784), (2, 1, 28, 28))
    >>> torch.equal(example_input("mlp", seed=1), example_input("mlp", seed=1))
    True
    """
    return entry(name).make_input(batch, generator(seed, 7), MappingProxyType(kw))
