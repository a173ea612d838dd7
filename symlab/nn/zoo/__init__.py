"""The model zoo: plain ``nn.Module``s written the usual PyTorch way, for symlab to trace.

Small CNN (2-d and MNIST-1D), ResNet-20 and ResNet-50 with width multipliers, CIFAR VGG-16,
transformer encoders (``nn.TransformerEncoderLayer`` and hand-written attention), and Lim et
al.'s W-asymmetric and FiGLU variants. Every model takes ``seed`` (initialisation, leaving the
global RNG untouched); asymmetric ones also take ``mask_seed`` (masks, fixed values, gates).
:mod:`symlab.nn.zoo.registry` builds them by name.

>>> import torch
>>> from symlab.nn import zoo
>>> net = zoo.get("cnn1d", widths=(4, 8, 8), seed=0)
>>> tuple(net(zoo.example_input("cnn1d")).shape)
(2, 10)
"""

from symlab.nn.asymmetric_conv import FiGLU2d, WAsymConv2d
from symlab.nn.zoo.asym_resnet import (
    WASYM_RESNET20_PRESETS,
    AsymPreset,
    FiGLUResNet20,
    WAsymResNet20,
)
from symlab.nn.zoo.cnn import SmallCNN
from symlab.nn.zoo.registry import ZooEntry, entry, example_input, get, names, tiny
from symlab.nn.zoo.resnet import BasicBlock, ResNet20, ResNetLayers
from symlab.nn.zoo.resnet50 import Bottleneck, ResNet50
from symlab.nn.zoo.transformer import (
    HandAttention,
    HandTransformer,
    HandTransformerBlock,
    TransformerClassifier,
)
from symlab.nn.zoo.vgg import VGG16

__all__ = [
    "VGG16",
    "WASYM_RESNET20_PRESETS",
    "AsymPreset",
    "BasicBlock",
    "Bottleneck",
    "FiGLU2d",
    "FiGLUResNet20",
    "HandAttention",
    "HandTransformer",
    "HandTransformerBlock",
    "ResNet20",
    "ResNet50",
    "ResNetLayers",
    "SmallCNN",
    "TransformerClassifier",
    "WAsymConv2d",
    "WAsymResNet20",
    "ZooEntry",
    "entry",
    "example_input",
    "get",
    "names",
    "tiny",
]
