"""Faithful miniature copies of timm's and torchvision's layer classes that subclass registered
torch layers with a different forward (same class structure and forward as the real ones:
timm/layers/norm_act.py, timm/layers/std_conv.py, torchvision/ops/misc.py), so that the
subclass handling is tested without those packages."""

# ruff: noqa: SIM102, SIM108  (the forward is timm's, kept as written)
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _create_act(act_layer, act_kwargs=None, inplace=False, apply_act=True):
    act_kwargs = act_kwargs or {}
    if act_layer is not None and apply_act:
        if inplace:
            act_kwargs["inplace"] = inplace
        return act_layer(**act_kwargs)
    return nn.Identity()


class BatchNormAct2d(nn.BatchNorm2d):
    """timm.layers.BatchNormAct2d: BatchNorm2d whose forward also applies an activation."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, apply_act=True, act_layer=nn.ReLU, act_kwargs=None,
                 inplace=True, drop_layer=None):  # fmt: skip
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)  # fmt: skip
        self.drop = drop_layer() if drop_layer is not None else nn.Identity()
        self.act = _create_act(act_layer, act_kwargs=act_kwargs, inplace=inplace,
                               apply_act=apply_act)  # fmt: skip

    def forward(self, x):
        torch._assert(x.ndim == 4, f"expected 4D input (got {x.ndim}D input)")
        if self.momentum is None:
            exponential_average_factor = 0.0
        else:
            exponential_average_factor = self.momentum
        if self.training and self.track_running_stats:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    exponential_average_factor = 1.0 / float(self.num_batches_tracked)
                else:
                    exponential_average_factor = self.momentum
        if self.training:
            bn_training = True
        else:
            bn_training = (self.running_mean is None) and (self.running_var is None)
        x = F.batch_norm(
            x,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            bn_training,
            exponential_average_factor,
            self.eps,
        )
        x = self.drop(x)
        x = self.act(x)
        return x


class GroupNormAct(nn.GroupNorm):
    """timm.layers.GroupNormAct (num_channels first, then num_groups)."""

    def __init__(self, num_channels, num_groups=32, eps=1e-5, affine=True, apply_act=True,
                 act_layer=nn.ReLU, act_kwargs=None, inplace=True, drop_layer=None):  # fmt: skip
        super().__init__(num_groups, num_channels, eps=eps, affine=affine)
        self.drop = drop_layer() if drop_layer is not None else nn.Identity()
        self.act = _create_act(act_layer, act_kwargs=act_kwargs, inplace=inplace,
                               apply_act=apply_act)  # fmt: skip
        self._fast_norm = False

    def forward(self, x):
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        x = self.drop(x)
        x = self.act(x)
        return x


class StdConv2d(nn.Conv2d):
    """timm.layers.StdConv2d: weight standardisation (no gain)."""

    def __init__(self, in_channel, out_channels, kernel_size, stride=1, padding=None,
                 dilation=1, groups=1, bias=False, eps=1e-6):  # fmt: skip
        if padding is None:
            padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        super().__init__(in_channel, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)  # fmt: skip
        self.eps = eps

    def forward(self, x):
        weight = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None,
            training=True, momentum=0.0, eps=self.eps,
        ).reshape_as(self.weight)  # fmt: skip
        x = F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return x


class ScaledStdConv2d(nn.Conv2d):
    """timm.layers.ScaledStdConv2d (NF-ResNets): standardised weight times a learned gain."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 dilation=1, groups=1, bias=True, gamma=1.0, eps=1e-6, gain_init=1.0):  # fmt: skip
        if padding is None:
            padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)  # fmt: skip
        self.scale = gamma * self.weight[0].numel() ** -0.5
        self.eps = eps
        self.gain_init = gain_init
        self.gain = nn.Parameter(torch.empty((self.out_channels, 1, 1, 1)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if hasattr(self, "gain"):
            torch.nn.init.constant_(self.gain, self.gain_init)
            super().reset_parameters()

    def forward(self, x):
        weight = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None,
            weight=(self.gain * self.scale).view(-1),
            training=True, momentum=0.0, eps=self.eps,
        ).reshape_as(self.weight)  # fmt: skip
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class ConvNormActivation(nn.Sequential):
    """torchvision.ops.misc.ConvNormActivation: a Sequential of conv, norm and activation."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None,
                 groups=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1,
                 inplace=True, bias=None, conv_layer=nn.Conv2d):  # fmt: skip
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers = [conv_layer(in_channels, out_channels, kernel_size, stride, padding,
                             dilation=dilation, groups=groups, bias=bias)]  # fmt: skip
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            params = {} if inplace is None else {"inplace": inplace}
            layers.append(activation_layer(**params))
        super().__init__(*layers)
        self.out_channels = out_channels


class Conv2dNormActivation(ConvNormActivation):
    """torchvision.ops.misc.Conv2dNormActivation."""

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None,
                 groups=1, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1,
                 inplace=True, bias=None):  # fmt: skip
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups,
                         norm_layer, activation_layer, dilation, inplace, bias,
                         nn.Conv2d)  # fmt: skip


class FrozenBatchNormAct2d(nn.Module):
    """timm.layers.FrozenBatchNormAct2d: statistics and affine parameters as buffers."""

    def __init__(self, num_features, eps=1e-5, act_layer=nn.ReLU, inplace=True):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.drop = nn.Identity()
        self.act = _create_act(act_layer, inplace=inplace)

    def forward(self, x):
        w = self.weight.reshape(1, -1, 1, 1)
        b = self.bias.reshape(1, -1, 1, 1)
        rv = self.running_var.reshape(1, -1, 1, 1)
        rm = self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + self.eps).rsqrt()
        bias = b - rm * scale
        x = x * scale + bias
        x = self.act(self.drop(x))
        return x


class LayerNormAct2d(nn.LayerNorm):
    """timm.layers.LayerNormAct2d: a LayerNorm over channels of a feature map, then an act."""

    def __init__(self, num_channels, eps=1e-5, affine=True, act_layer=nn.ReLU, inplace=True):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)
        self.drop = nn.Identity()
        self.act = _create_act(act_layer, inplace=inplace)

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        x = self.drop(x)
        x = self.act(x)
        return x
