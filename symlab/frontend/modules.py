"""How tracing reads a torch module as one graph op: its op name, output width and attributes.

Register more with :func:`register_module_op`; tracing refuses a module it cannot read. (The
other direction, a torch module for a graph node, is :mod:`symlab.nn.graphnet`'s.) A module is
read by a reader only when it computes what the registered class's ``forward`` computes
(:mod:`symlab.frontend.exact`): a subclass that changes ``forward`` or a method it calls is
traced into instead, and a module with forward hooks is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from symlab.errors import UnsupportedOpError
from symlab.frontend.exact import Fingerprint, fingerprint, hooks_reason
from symlab.nn.asymmetric import FiGLU, WAsymLinear, masked_layer_attrs
from symlab.nn.asymmetric_conv import FiGLU2d, WAsymConv2d

__all__ = ["ModuleOp", "module_op_for", "reading", "register_module_op", "why_not_read"]

_ACT_TYPES: dict[type[nn.Module], str] = {
    nn.Identity: "identity",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Softplus: "softplus",
    nn.ELU: "elu",
    nn.ReLU6: "relu6",
    nn.Hardtanh: "hardtanh",
    nn.Softsign: "softsign",
    nn.Tanhshrink: "tanhshrink",
    nn.Mish: "mish",
    nn.Hardswish: "hardswish",
    nn.SELU: "selu",
    nn.CELU: "celu",
    nn.Hardsigmoid: "hardsigmoid",
    nn.LogSigmoid: "logsigmoid",
}


@dataclass(frozen=True)
class ModuleOp:
    """How one module type maps to a graph op.

    ``read(module, in_width)`` returns ``(op, out_width, attrs)``; ``fingerprint`` records
    what the registered class's ``forward`` reaches, so that a subclass or a patch that
    changes it is not read as this op.
    """

    module_type: type[nn.Module]
    read: Callable[[nn.Module, Any], tuple[str, Any, dict[str, Any]]]
    fingerprint: Fingerprint


_MODULE_OPS: dict[type[nn.Module], ModuleOp] = {}


def register_module_op(
    module_type: type[nn.Module],
    read: Callable[[nn.Module, Any], tuple[str, Any, dict[str, Any]]],
) -> None:
    """Teach tracing to read ``module_type`` as a graph op (see :class:`ModuleOp`).

    >>> from torch import nn
    >>> class Twice(nn.Module):  # 2x: positively homogeneous, like a linear activation
    ...     def forward(self, x):
    ...         return 2 * x
    >>> register_module_op(Twice, lambda m, w_in: ("activation", w_in, {"fn": "identity"}))
    >>> module_op_for(Twice()).read(Twice(), 4)
    ('activation', 4, {'fn': 'identity'})
    >>> _ = _MODULE_OPS.pop(Twice)
    """
    _MODULE_OPS[module_type] = ModuleOp(module_type, read, fingerprint(module_type))


def _registered_base(module: nn.Module) -> ModuleOp | None:
    return next((_MODULE_OPS[t] for t in type(module).__mro__ if t in _MODULE_OPS), None)


def why_not_read(module: nn.Module) -> str | None:
    """Why a module of a registered class (or a subclass of one) is not read as that class's
    op; None when it is read, or when no registered class is among its bases.

    >>> from torch import nn
    >>> class BNReLU(nn.BatchNorm1d):  # an activation after the norm: not a BatchNorm1d
    ...     def forward(self, x):
    ...         return super().forward(x).relu()
    >>> why_not_read(BNReLU(3)).endswith("redefines 'forward', which BatchNorm1d.forward uses")
    True
    """
    entry = _registered_base(module)
    return None if entry is None else entry.fingerprint.reason(module)


def module_op_for(module: nn.Module) -> ModuleOp | None:
    """The registered entry that reads ``module``: that of its class, or of a registered base
    class whose ``forward`` it computes unchanged (see :mod:`symlab.frontend.exact`); None
    for anything else (traced into). A module with forward hooks is refused
    (:class:`UnsupportedOpError`): torch.fx would not see what the hooks do.

    >>> from torch import nn
    >>> class Named(nn.Linear):  # a subclass that only adds a name: still a Linear
    ...     pass
    >>> module_op_for(Named(2, 3)).module_type.__name__
    'Linear'
    """
    entry = reading(module)
    hooks = hooks_reason(module) if entry is not None else None
    if hooks is not None:
        raise UnsupportedOpError(f"module of type {type(module).__name__}: {hooks}")
    return entry


def reading(module: nn.Module) -> ModuleOp | None:
    """:func:`module_op_for` without the refusal of hooks (what tracing asks: is it a leaf).

    >>> from torch import nn
    >>> reading(nn.ReLU()).module_type.__name__, reading(nn.Sequential()) is None
    ('ReLU', True)
    """
    entry = _registered_base(module)
    if entry is None:
        return None
    return entry if entry.fingerprint.reason(module) is None else None


def _read_linear(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.Linear)
    return "linear", m.out_features, {"bias": m.bias is not None}


def _read_wasym(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, WAsymLinear)
    attrs = {
        "bias": m.bias is not None,
        "num_fixed": m.num_fixed,
        "kappa": m.kappa,
        "shared_mask": m.shared_mask,
    }
    if getattr(m, "syre", 0.0):
        attrs["syre"] = m.syre
    attrs.update(masked_layer_attrs(m))  # what the buffers hold, not what was asked for
    return "wasym_linear", m.out_features, attrs


def _read_act(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    fn = next(_ACT_TYPES[t] for t in type(m).__mro__ if t in _ACT_TYPES)
    attrs: dict[str, Any] = {"fn": fn}
    if isinstance(m, nn.LeakyReLU):
        attrs["negative_slope"] = float(m.negative_slope)
    if isinstance(m, nn.Hardtanh) and not isinstance(m, nn.ReLU6):
        attrs.update(min_val=float(m.min_val), max_val=float(m.max_val))
    if isinstance(m, nn.Softplus) and (m.beta != 1 or m.threshold != 20):
        attrs.update(beta=m.beta, threshold=m.threshold)
    return "activation", w_in, attrs


def _read_layernorm(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.LayerNorm)
    attrs = {"eps": m.eps, "affine": m.elementwise_affine, "bias": m.bias is not None}
    return "layernorm", m.normalized_shape[-1], attrs


def _read_rmsnorm(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.RMSNorm)
    eps = m.eps if m.eps is not None else torch.finfo(torch.get_default_dtype()).eps
    attrs = {"eps": eps, "affine": m.elementwise_affine, "bias": False,
             "normalized_shape": tuple(m.normalized_shape)}  # fmt: skip
    return "rmsnorm", m.normalized_shape[-1], attrs


def _read_batchnorm(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    """BatchNorm and InstanceNorm (per channel, over positions; a per-channel scale is free)."""
    assert isinstance(m, nn.modules.batchnorm._NormBase)
    attrs = {
        "eps": m.eps,
        "momentum": m.momentum,
        "affine": m.affine,
        "track_running_stats": m.track_running_stats,
    }
    return "batchnorm", m.num_features, attrs


def _read_figlu(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, FiGLU)
    return "figlu", m.num_features, {}


def _read_flatten(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    return "flatten", w_in, {}


register_module_op(nn.Linear, _read_linear)
register_module_op(WAsymLinear, _read_wasym)
for _t in _ACT_TYPES:
    register_module_op(_t, _read_act)
register_module_op(nn.LayerNorm, _read_layernorm)
register_module_op(nn.BatchNorm1d, _read_batchnorm)
register_module_op(FiGLU, _read_figlu)
register_module_op(nn.Flatten, _read_flatten)


def _read_dropout(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.modules.dropout._DropoutNd)
    return "dropout", w_in, {"p": m.p}


for _t in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout):  # fmt: skip
    register_module_op(_t, _read_dropout)
register_module_op(nn.RMSNorm, _read_rmsnorm)
for _t in (nn.Unflatten, nn.Unfold, nn.Fold):  # fixed (Unfold mixes channels with taps)
    register_module_op(_t, lambda m, w_in: ("opaque", w_in, {}))
for _t in (nn.Softmax, nn.LogSoftmax):  # fixed; a shift of its logits is a symmetry
    register_module_op(_t, lambda m, w_in: ("softmax", w_in, {"dim": m.dim}))


def _read_conv(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)
    if m.padding_mode != "zeros":
        attrs_pad = True
    else:
        attrs_pad = (
            any(int(p) != 0 for p in m.padding)
            if not isinstance(m.padding, str)
            else (m.padding != "valid")
        )
    g = m.groups
    op = (
        "conv" if g == 1 else ("dwconv" if g == m.in_channels == m.out_channels else "grouped_conv")
    )
    attrs = {"bias": m.bias is not None, "kernel": tuple(m.kernel_size), "groups": g,
             "padded": attrs_pad}  # fmt: skip
    return op, m.out_channels, attrs


def _read_groupnorm(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.GroupNorm)
    return "groupnorm", m.num_channels, {"num_groups": m.num_groups, "eps": m.eps,
                                         "affine": m.affine}  # fmt: skip


def _read_embedding(m: nn.Module, w_in: Any) -> tuple[str, Any, dict[str, Any]]:
    assert isinstance(m, nn.Embedding)
    if m.max_norm is not None:  # its forward rescales the rows it reads to at most max_norm
        raise UnsupportedOpError(  # in place: a map of the features changes which rows it cuts
            f"nn.Embedding with max_norm={m.max_norm} renormalises the rows it reads (in place, "
            "in the forward); symlab does not derive symmetries through it. Drop max_norm (or "
            "renormalise the table once, before deriving) to derive the group"
        )
    return "embedding", m.embedding_dim, {"num_embeddings": m.num_embeddings}


def _keeps_shift(m: nn.Module) -> bool:
    """Whether ``m`` maps ``x + c`` (``c`` per channel) to ``m(x) + c``: not zero padding, nor
    an average pool whose averages take in zero padding."""
    if isinstance(m, nn.ZeroPad1d | nn.ZeroPad2d | nn.ZeroPad3d):
        return False
    if isinstance(m, nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d):
        pad = m.padding if isinstance(m.padding, tuple) else (m.padding,)
        unpadded = all(int(p) == 0 for p in pad) and not m.ceil_mode
        return unpadded or not m.count_include_pad
    return True


def _pool(kind: str) -> Callable[[nn.Module, Any], tuple[str, Any, dict[str, Any]]]:
    return lambda m, w_in: (kind, w_in, {"keeps_shift": _keeps_shift(m)})


for _t in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_module_op(_t, _read_conv)
register_module_op(nn.BatchNorm2d, _read_batchnorm)
register_module_op(nn.BatchNorm3d, _read_batchnorm)
register_module_op(nn.GroupNorm, _read_groupnorm)
register_module_op(nn.Embedding, _read_embedding)
for _t in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d):
    register_module_op(_t, _pool("pool_max"))
for _t in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
           nn.AdaptiveAvgPool3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ReflectionPad1d,
           nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
           nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d,
           nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d):  # fmt: skip
    register_module_op(_t, _pool("pool_avg"))  # linear, channel by channel, on positions only
for _t in (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d):
    register_module_op(_t, _read_batchnorm)


def _read_wasym_conv(m: nn.Module, w_in: object) -> tuple[str, object, dict[str, object]]:
    assert isinstance(m, WAsymConv2d)
    attrs = {
        "bias": m.bias is not None,
        "kernel": tuple(m.kernel_size),
        "groups": 1,
        "num_fixed": m.num_fixed,
        "kappa": m.kappa,
        "padded": any(m.padding),
        **masked_layer_attrs(m),
    }  # fmt: skip  (what the buffers hold)
    return "wasym_conv", m.out_channels, attrs


def _read_figlu2d(m: nn.Module, w_in: object) -> tuple[str, object, dict[str, object]]:
    assert isinstance(m, FiGLU2d)
    return "figlu2d", m.num_channels, {}


register_module_op(WAsymConv2d, _read_wasym_conv)
register_module_op(FiGLU2d, _read_figlu2d)
