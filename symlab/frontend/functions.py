"""Which functions and tensor methods the torch.fx front-end maps to which graph ops.

Elementwise activations, additions, scalings, flattens, means and pools are modelled; the ops
in :data:`OPAQUE_FUNCS` are traced as *opaque* (their tensors fixed — sound); anything else is
refused. :func:`register_function` maps your own functions or tensor methods to an op.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch.nn import functional as F

__all__ = [
    "ACT_FUNCS",
    "ADD_FUNCS",
    "FLATTEN_FUNCS",
    "IDENTITY_FUNCS",
    "MEAN_FUNCS",
    "MUL_FUNCS",
    "OPAQUE_FUNCS",
    "POOL_FUNCS",
    "SOFTMAX_FUNCS",
    "USER_FUNCS",
    "register_function",
]

USER_FUNCS: dict[Any, tuple[str, dict[str, Any]]] = {}


def register_function(function: Any, op: str, /, **attrs: Any) -> None:
    """Trace calls of ``function`` (a function such as ``torch.sin``, or a tensor method name
    such as ``"abs"``) as the graph op ``op`` with ``attrs``; its tensor arguments become the
    node's inputs in order. Give ``op`` a rule with ``@symlab.symmetry.rule(op)``.

    >>> register_function(torch.sin, "activation", fn="sin_example")
    >>> USER_FUNCS.pop(torch.sin)[0]
    'activation'
    """
    USER_FUNCS[function] = (op, dict(attrs))


ACT_FUNCS: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.leaky_relu: "leaky_relu", torch.tanh: "tanh",
    F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.gelu: "gelu",
    F.silu: "silu", F.softplus: "softplus", F.elu: "elu",
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", F.relu6: "relu6",
    F.hardtanh: "hardtanh", F.softsign: "softsign", F.tanhshrink: "tanhshrink", F.mish: "mish",
    F.hardswish: "hardswish", F.selu: "selu", F.celu: "celu", F.hardsigmoid: "hardsigmoid",
    F.logsigmoid: "logsigmoid", torch.relu_: "relu", F.relu_: "relu",
    torch.abs: "abs", "abs": "abs", torch.absolute: "abs", "absolute": "abs",
    torch.exp: "exp", "exp": "exp", torch.erf: "erf", "erf": "erf", torch.special.erf: "erf",
}  # fmt: skip
OPAQUE_FUNCS: set[Any] = {
    F.softmax, torch.softmax, torch.matmul, operator.matmul, torch.bmm, torch.einsum,
    F.scaled_dot_product_attention, torch.transpose, torch.permute, torch.split, torch.chunk,
    torch.unsqueeze, torch.squeeze, operator.getitem, torch.stack, F.log_softmax,
    "softmax", "transpose", "permute", "unsqueeze", "squeeze", "expand", "split", "chunk",
    "masked_fill", "log_softmax", "unflatten", "repeat", "narrow", "type_as", "float", "to",
    torch.unbind, "unbind", torch.masked_fill, torch.tril, torch.triu, "tril", "triu",
    torch.where, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
    "sum", torch.sum, torch.baddbmm, "baddbmm", torch.fft.fftn, torch.fft.fft, torch.fft.fft2,
    torch.acos, "acos", torch.real, F.unfold, F.fold, torch.tensor_split, "tensor_split",
    torch.cumsum, "cumsum",
}  # fmt: skip
ADD_FUNCS = {operator.add, torch.add, operator.iadd, "add", operator.sub, torch.sub, "sub"}
MUL_FUNCS = {operator.mul, torch.mul, operator.truediv, torch.div, "mul", "div", operator.imul,
             torch.multiply, "multiply"}  # fmt: skip
FLATTEN_FUNCS = {torch.flatten, "flatten", "view", "reshape", torch.reshape, "reshape_as",
                 "view_as"}  # fmt: skip
MEAN_FUNCS = {torch.mean, "mean"}
SUM_FUNCS = {torch.sum, "sum"}  # over axes other than the units: a pool that scales shifts
POOL_FUNCS = {
    F.adaptive_avg_pool1d: "pool_avg", F.adaptive_avg_pool2d: "pool_avg",
    F.avg_pool1d: "pool_avg", F.avg_pool2d: "pool_avg", F.max_pool1d: "pool_max",
    F.max_pool2d: "pool_max", F.adaptive_max_pool2d: "pool_max", F.avg_pool3d: "pool_avg",
    F.max_pool3d: "pool_max", F.adaptive_avg_pool3d: "pool_avg", F.adaptive_max_pool1d: "pool_max",
    F.interpolate: "pool_avg",  # per channel, weights summing to 1 (every mode)
}  # fmt: skip
IDENTITY_FUNCS = {"contiguous", F.dropout, "clone", "detach"}
SOFTMAX_FUNCS = {
    F.softmax, torch.softmax, "softmax", F.log_softmax, torch.log_softmax, "log_softmax",
}  # fmt: skip
