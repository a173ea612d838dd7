"""The vocabulary of the model fuzzer: unary ops, activation modules, norms, subclassed layers,
written as Python source the way users write them (see :mod:`symlab.testing.fuzz`)."""

from __future__ import annotations

__all__ = ["ACT_MODULES", "COMMON_CALLS", "PREAMBLE", "UNARY_CALLS"]

#: the activations most models use
COMMON_CALLS = [
    "F.relu({h})",
    "torch.tanh({h})",
    "torch.sigmoid({h})",
    "F.gelu({h})",
    "F.silu({h})",
    "F.leaky_relu({h}, 0.1)",
    "F.softplus({h})",
    "{h}",
    "F.elu({h})",
    "{h}.relu()",
]

#: elementwise calls on ``h`` (source templates); several have no rule and must be refused
UNARY_CALLS = [
    "F.relu({h})", "torch.relu({h})", "{h}.relu()", "F.leaky_relu({h}, 0.1)", "torch.tanh({h})",
    "{h}.tanh()", "F.tanh({h})", "torch.sigmoid({h})", "{h}.sigmoid()", "F.sigmoid({h})",
    "F.gelu({h})", "F.gelu({h}, approximate='tanh')", "F.silu({h})", "F.softplus({h})",
    "F.elu({h})", "F.relu6({h})", "F.hardtanh({h})", "F.hardtanh({h}, -0.5, 2.0)",
    "F.softsign({h})", "F.tanhshrink({h})", "F.mish({h})", "F.hardswish({h})", "F.selu({h})",
    "F.celu({h})", "F.hardsigmoid({h})", "F.logsigmoid({h})", "torch.abs({h})", "{h}.abs()",
    "torch.neg({h})", "-{h}", "torch.exp({h})", "{h}.exp()", "torch.sin({h})", "torch.cos({h})",
    "torch.square({h})", "{h} ** 2", "{h}.pow(3)", "torch.clamp({h}, -1.0, 1.0)",
    "{h}.clamp(min=0.0)", "torch.sign({h})", "torch.erf({h})", "torch.atan({h})",
    "torch.log1p({h}.abs())", "torch.sqrt({h}.abs() + 1.0)", "F.dropout({h}, 0.2, False)",
    "{h}.clone()", "{h}.contiguous()", "{h}.detach()", "F.softshrink({h})", "F.hardshrink({h})",
    "F.rrelu({h}, training=False)", "torch.nan_to_num({h})", "torch.round({h})",
    "torch.floor({h})", "torch.sinh({h})", "torch.asinh({h})", "{h}.float().double()",
]  # fmt: skip

#: activation modules, constructed in ``__init__``
ACT_MODULES = [
    "nn.ReLU()", "nn.LeakyReLU(0.2)", "nn.Tanh()", "nn.Sigmoid()", "nn.GELU()", "nn.SiLU()",
    "nn.Softplus()", "nn.ELU()", "nn.ReLU6()", "nn.Hardtanh()", "nn.Hardtanh(-1.0, 3.0)",
    "nn.Softsign()", "nn.Tanhshrink()", "nn.Mish()", "nn.Hardswish()", "nn.SELU()",
    "nn.CELU()", "nn.Hardsigmoid()", "nn.LogSigmoid()", "nn.Identity()", "nn.Dropout(0.3)",
    "nn.AlphaDropout(0.2)", "nn.PReLU()", "nn.Softshrink()", "nn.Threshold(0.1, 0.0)",
    "nn.GLU()", "NamedReLU()", "ScaledTanh()", "ShiftedSigmoid()",
]  # fmt: skip

#: subclassed modules users write: some keep the base forward, most change it
PREAMBLE = '''
import random

import torch
import torch.nn.functional as F
from torch import nn


class NamedReLU(nn.ReLU):
    """Only a name: still a ReLU."""


class ScaledTanh(nn.Tanh):
    def forward(self, x):
        return 2.0 * super().forward(x)


class ShiftedSigmoid(nn.Sigmoid):
    def forward(self, x):
        return super().forward(x) - 0.5


class ScaledLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 0.5


class OffsetLinear(nn.Linear):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias) + self.offset


class NormAct(nn.BatchNorm2d):
    def __init__(self, c):
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         False, 0.1, self.eps)
        return self.act(x)


class NormAct1d(nn.BatchNorm1d):
    def forward(self, x):
        return torch.tanh(super().forward(x))


class GNAct(nn.GroupNorm):
    def forward(self, x):
        return F.silu(F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps))


class WSConv(nn.Conv2d):
    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ScaledConv(nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, self.weight * 0.5, self.bias)


class TwiceConv(nn.Conv2d):
    def _conv_forward(self, x, weight, bias):
        return F.conv2d(x, 2 * weight, bias, self.stride, self.padding)


class PlainLN(nn.LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


def tie_params(model, seed):
    """Make two parameters of one shape one tensor under two keys (weight tying)."""
    rng, by_shape = random.Random(seed), {}
    for name, p in model.named_parameters():
        by_shape.setdefault(tuple(p.shape), []).append(name)
    groups = [names for _, names in sorted(by_shape.items()) if len(names) > 1]
    if groups:
        a, b = rng.sample(rng.choice(groups), 2)
        owner, _, attr = b.rpartition(".")
        setattr(model.get_submodule(owner), attr, model.get_parameter(a))
'''
