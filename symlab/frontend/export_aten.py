"""Which aten ops of a ``torch.export`` graph map to which torch-level functions and methods.

:data:`ATEN` is the one table of the torch.export fallback (:mod:`symlab.frontend.export`):
each entry rewrites the arguments of one aten op into a call the torch.fx front-end already
knows (see :mod:`symlab.frontend.functions`): ``aten.relu`` → ``torch.relu``, ``aten.add.Tensor``
→ ``operator.add``, ``aten.view`` → the ``view`` method, ``aten.slice`` → indexing, … Identity
ops (``alias``, ``detach``, eval-mode ``dropout``, …) map to their input. An entry
returns ``None`` for arguments it cannot express (``add`` with ``alpha``, ``div`` with a
rounding mode); the op is then refused like an op with no entry.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch.nn import functional as F

__all__ = ["ATEN", "FIRST_OF_PAIR", "Call", "rewrite"]

Call = tuple[str, Any, tuple[Any, ...], dict[str, Any]]
"""``(kind, target, args, kwargs)``: kind is ``call_function``, ``call_method`` or ``forward``
(the node *is* ``args[0]``)."""

_Rule = Callable[[tuple[Any, ...], dict[str, Any]], Call | None]

aten = torch.ops.aten


def _fn(target: Any, nargs: int | None = None, keep: tuple[str, ...] = ()) -> _Rule:
    """``target(*args[:nargs], **kwargs kept)``."""

    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        kept = {k: kwargs[k] for k in keep if k in kwargs}
        return "call_function", target, tuple(args[:nargs] if nargs else args), kept

    return rule


def _embedding(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """``aten.embedding(weight, indices, padding_idx, ...)`` as ``F.embedding(indices, weight)``
    (the padding index only shapes gradients)."""
    return "call_function", F.embedding, (args[1], args[0]), {}


def _method(name: str, nargs: int | None = None, keep: tuple[str, ...] = ()) -> _Rule:
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        kept = {k: kwargs[k] for k in keep if k in kwargs}
        return "call_method", name, tuple(args[:nargs] if nargs else args), kept

    return rule


def _forward(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return "forward", None, (args[0],), {}


def _arith(target: Any, swap: bool = False) -> _Rule:
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        alpha = args[2] if len(args) > 2 else kwargs.get("alpha", 1)
        if alpha != 1 or set(kwargs) - {"alpha"}:
            return None
        a, b = args[:2]
        return "call_function", target, (b, a) if swap else (a, b), {}

    return rule


def _softmax(target: Any) -> _Rule:
    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        dtype = args[2] if len(args) > 2 and not isinstance(args[2], bool) else None
        dtype = kwargs.get("dtype", dtype)
        return "call_function", target, tuple(args[:2]), {"dtype": dtype} if dtype else {}

    return rule


def _index(kind: str) -> _Rule:
    """``aten.slice(x, dim, start, end, step)`` / ``aten.select(x, dim, i)`` as ``x[...]``."""

    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        x, dim = args[0], (args[1] if len(args) > 1 else kwargs.get("dim", 0))
        if kind == "slice":
            start, end, step = (list(args[2:]) + [None, None, 1][len(args[2:]) :])[:3]
            item: Any = slice(start, end, step)
        else:
            item = args[2] if len(args) > 2 else kwargs["index"]
        if dim >= 0:
            index = (*(slice(None),) * dim, item)
        else:
            index = (Ellipsis, item, *(slice(None),) * (-dim - 1))
        return "call_function", operator.getitem, (x, index), {}

    return rule


def _index_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """``aten.index.Tensor(x, [i, None, j])`` (advanced indexing) as ``x[i, :, j]``."""
    item = tuple(slice(None) if i is None else i for i in args[1])
    return "call_function", operator.getitem, (args[0], item), {}


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    names = ("attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    defaults = (None, 0.0, False, None, False)
    given = dict(zip(names, args[3:], strict=False)) | dict(kwargs)
    kept = {k: given[k] for k, d in zip(names, defaults, strict=True) if given.get(k, d) != d}
    return "call_function", F.scaled_dot_product_attention, tuple(args[:3]), kept


def _pool(target: Any, stride_at: int) -> _Rule:
    """Pooling with aten's empty stride (meaning: the kernel size) written as ``None``."""

    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        a = list(args)
        if len(a) > stride_at and a[stride_at] == []:
            a[stride_at] = None
        return "call_function", target, tuple(a), dict(kwargs)

    return rule


def _dropout(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    train = args[2] if len(args) > 2 else kwargs.get("train", False)
    if not train:
        return "forward", None, (args[0],), {}
    return "call_function", F.dropout, (args[0], args[1], True), {}


def _div(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    if kwargs.get("rounding_mode") is not None or len(args) > 2:
        return None
    return "call_function", operator.truediv, tuple(args[:2]), {}


def _to_copy(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    kept = {k: kwargs[k] for k in ("dtype", "device") if kwargs.get(k) is not None}
    return "call_method", "to", (args[0],), kept


def _to(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """``aten.to`` (its dtype, device and other-tensor overloads) as ``Tensor.to`` with the
    dtype, device or tensor alone: ``non_blocking``, ``copy`` and the memory format change no
    value (Qwen3.5 calls ``.to(torch.float32, memory_format=torch.contiguous_format)``, which
    torch.export records with every argument positional)."""
    kept = [a for a in args[1:] if isinstance(a, torch.dtype | torch.device | fx.Node)]
    named = {k: kwargs[k] for k in ("dtype", "device") if kwargs.get(k) is not None}
    return "call_method", "to", (args[0], *kept), named


def _transpose_2d(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return "call_method", "transpose", (args[0], 0, -1), {}


def _matrix_t(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return "call_method", "transpose", (args[0], -2, -1), {}  # x.mT: the last two axes


def _numpy_t(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return "call_function", getattr, (args[0], "T"), {}  # x.T: every axis reversed


def _elu(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    alpha, scale, in_scale = (list(args[1:]) + [1.0, 1.0, 1.0][len(args[1:]) :])[:3]
    if scale != 1 or in_scale != 1 or kwargs:
        return None
    return "call_function", F.elu, (args[0], alpha), {}


def _neg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    return "call_function", operator.mul, (args[0], -1), {}


def _no_scaling(target: Any, nargs: int) -> _Rule:
    """``addmm``/``baddbmm`` with ``beta = alpha = 1`` (any other scaling is refused)."""

    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        if any(kwargs.get(k, 1) != 1 for k in ("beta", "alpha")) or len(args) > nargs:
            return None
        return "call_function", target, tuple(args), {}

    return rule


def _pad_mode(mode: str) -> _Rule:
    """``aten.reflection_pad2d(x, pad)`` and kin as ``F.pad(x, pad, mode)``."""

    def rule(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        return "call_function", F.pad, (args[0], args[1], mode), {}

    return rule


def _var(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """``var.dim(x, dim, unbiased, keepdim)`` or ``var.correction(x, dim, *, correction,
    keepdim)`` as ``torch.var`` with keywords."""
    kept = {k: kwargs[k] for k in ("correction", "keepdim") if k in kwargs}
    if len(args) > 2:  # var.dim: unbiased is positional
        kept["correction"] = int(bool(args[2]))
    if len(args) > 3:
        kept["keepdim"] = args[3]
    return "call_function", torch.var, tuple(args[:2]), kept


def _batch_norm(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    """``aten.batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps,
    cudnn_enabled)`` as ``F.batch_norm(x, running_mean, running_var, weight, bias, training,
    momentum, eps)``."""
    names = ("input", "weight", "bias", "running_mean", "running_var", "training", "momentum",
             "eps")  # fmt: skip
    a = dict(zip(names, args, strict=False)) | {k: v for k, v in kwargs.items() if k in names}
    order = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum",
             "eps")  # fmt: skip
    defaults = {"weight": None, "bias": None, "running_mean": None, "running_var": None,
                "training": False, "momentum": 0.1, "eps": 1e-5}  # fmt: skip
    return "call_function", F.batch_norm, tuple(a.get(k, defaults.get(k)) for k in order), {}


def _constant_pad(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    value = args[2] if len(args) > 2 else kwargs.get("value", 0.0)
    return "call_function", F.pad, (args[0], args[1], "constant", value), {}


def _repeat_interleave(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """``repeat_interleave.self_int(x, repeats, dim)`` with an int ``repeats`` and a ``dim``
    (a tensor of repeats or a flattening call has no mapping)."""
    names = ("self", "repeats", "dim", "output_size")
    a = dict(zip(names, args, strict=False)) | dict(kwargs)
    if not isinstance(a.get("repeats"), int) or not isinstance(a.get("dim"), int):
        return None
    return "call_function", torch.repeat_interleave, (args[0], a["repeats"], a["dim"]), {}


_IDENTITY = (aten.alias, aten.detach, aten.lift_fresh_copy)

ATEN: dict[Any, _Rule] = {
    # elementwise activations
    aten.relu: _fn(torch.relu, 1),
    aten.gelu: _fn(F.gelu, 1, keep=("approximate",)),
    aten.silu: _fn(F.silu, 1),
    aten.tanh: _fn(torch.tanh, 1),
    aten.sigmoid: _fn(torch.sigmoid, 1),
    aten.leaky_relu: _fn(F.leaky_relu, 2),
    aten.elu: _elu,
    aten.selu: _fn(F.selu, 1),
    aten.celu: _fn(F.celu, 2),
    aten.softplus: _fn(F.softplus, 3),
    aten.hardtanh: _fn(F.hardtanh, 3),
    aten.relu6: _fn(F.relu6, 1),
    aten.mish: _fn(F.mish, 1),
    aten.hardswish: _fn(F.hardswish, 1),
    aten.hardsigmoid: _fn(F.hardsigmoid, 1),
    aten.log_sigmoid: _fn(F.logsigmoid, 1),
    aten.abs: _fn(torch.abs, 1),
    aten.exp: _fn(torch.exp, 1),
    aten.erf: _fn(torch.erf, 1),  # hand-written GELU: x * 0.5 * (1 + erf(x / sqrt(2)))
    aten.rsqrt: _fn(torch.rsqrt, 1),  # read inside an L2 norm only (patterns/normalize.py)
    aten.pow: _fn(torch.pow, 2),
    aten.square: _fn(torch.square, 1),
    aten.clamp: _fn(torch.clamp, 3),
    aten.clip: _fn(torch.clamp, 3),
    aten.clamp_min: _fn(torch.clamp_min, 2),
    aten.clamp_max: _fn(torch.clamp_max, 2),
    aten.prelu: _fn(F.prelu, 2),
    aten._prelu_kernel: _fn(F.prelu, 2),
    aten.glu: _fn(F.glu, 2),
    aten.maximum: _fn(torch.maximum, 2),
    aten.minimum: _fn(torch.minimum, 2),
    aten.fmax: _fn(torch.fmax, 2),
    aten.fmin: _fn(torch.fmin, 2),
    # arithmetic
    aten.add: _arith(operator.add),
    aten.sub: _arith(operator.sub),
    aten.rsub: _arith(operator.sub, swap=True),
    aten.mul: _fn(operator.mul, 2),
    aten.multiply: _fn(operator.mul, 2),
    aten.div: _div,
    aten.neg: _neg,
    aten.addcmul: _fn(torch.addcmul, 3, keep=("value",)),  # x + v a b (symlab.frontend.decompose)
    aten.addcdiv: _fn(torch.addcdiv, 3, keep=("value",)),
    # normalisation written by hand and GPT-2's Conv1D (patterns: symlab.frontend.patterns)
    aten.rsqrt: _fn(torch.rsqrt, 1),
    aten.sqrt: _fn(torch.sqrt, 1),
    aten.var: _var,
    aten.addmm: _no_scaling(torch.addmm, 3),
    aten.baddbmm: _fn(torch.baddbmm, 3, keep=("beta", "alpha")),  # ALiBi scores (opaque)
    aten.matmul: _fn(torch.matmul, 2),
    aten.linear: _fn(F.linear, 3),
    # a convolution written as a call (a subclass scaling its weight, Mamba-style mixers):
    # aten.convNd takes F.convNd's arguments in F.convNd's order
    aten.conv1d: _fn(F.conv1d), aten.conv2d: _fn(F.conv2d), aten.conv3d: _fn(F.conv3d),
    aten.embedding: _embedding,
    aten.layer_norm: _fn(F.layer_norm, 5),
    aten.group_norm: _fn(F.group_norm, 5),
    aten.batch_norm: _batch_norm,
    aten.linalg_vector_norm: _fn(torch.linalg.vector_norm, 4),
    aten.norm: _fn(torch.norm, 4),
    aten.mm: _fn(torch.matmul, 2),
    aten.bmm: _fn(torch.bmm, 2),
    aten.einsum: _fn(torch.einsum, 2),
    aten.softmax: _softmax(torch.softmax),
    aten._softmax: _softmax(torch.softmax),
    aten.log_softmax: _softmax(F.log_softmax),
    aten._log_softmax: _softmax(F.log_softmax),
    aten.scaled_dot_product_attention: _sdpa,
    aten.masked_fill: _method("masked_fill", 3),
    aten.fft_fftn: _fn(torch.fft.fftn, 4),  # FNet's token mixing (opaque)
    aten.acos: _fn(torch.acos, 1),  # YOSO's angle between queries and keys (opaque)
    aten.real: _fn(torch.real, 1),  # the real part of FNet's Fourier transform (opaque)
    aten.im2col: _fn(F.unfold, 5),  # ConvBERT's span convolution (opaque)
    # comparisons and masks (opaque in the fx front-end; matched inside attention masks)
    aten.eq: _fn(operator.eq, 2), aten.ne: _fn(operator.ne, 2), aten.lt: _fn(operator.lt, 2),
    aten.le: _fn(operator.le, 2), aten.gt: _fn(operator.gt, 2), aten.ge: _fn(operator.ge, 2),
    aten.tril: _fn(torch.tril, 2), aten.triu: _fn(torch.triu, 2),
    aten.where: _fn(torch.where, 3), aten.unbind: _fn(torch.unbind, 2),
    # shapes
    aten.view: _method("view", 2),
    aten._unsafe_view: _method("view", 2),
    aten.reshape: _method("reshape", 2),
    aten.reshape_as: _method("reshape_as", 2),
    aten.view_as: _method("view_as", 2),
    aten.repeat_interleave: _repeat_interleave,
    aten.flatten: _fn(torch.flatten),
    aten.unflatten: _method("unflatten", 3),
    aten.transpose: _method("transpose", 3),
    aten.t: _transpose_2d,
    aten.numpy_T: _numpy_t,
    aten.mT: _matrix_t,
    aten.swapaxes: _method("transpose", 3),
    aten.swapdims: _method("transpose", 3),
    aten.permute: _method("permute", 2),
    aten.unsqueeze: _method("unsqueeze", 2),
    aten.squeeze: _method("squeeze"),
    aten.expand: _method("expand", 2),
    aten.repeat: _method("repeat", 2),
    aten.narrow: _method("narrow", 4),
    aten.slice: _index("slice"),
    aten.select: _index("select"),
    aten.index: _index_tensor,
    aten.split: _fn(torch.split, 3),
    aten.split_with_sizes: _fn(torch.split, 3),
    aten.chunk: _fn(torch.chunk, 3),
    aten.tensor_split: _fn(torch.tensor_split, 3),  # Qwen3.5's mixer output cut in three (opaque)
    aten.cumsum: _fn(torch.cumsum, 2, keep=("dtype",)),  # Qwen3.5's decay over tokens (opaque)
    aten.cat: _fn(torch.cat, 2),
    aten.concat: _fn(torch.cat, 2),
    aten.stack: _fn(torch.stack, 2),
    aten.to: _to,
    aten._to_copy: _to_copy,
    aten.type_as: _method("type_as", 2),
    aten.expand_as: _method("expand_as", 2),
    aten.flip: _fn(torch.flip, 2),
    aten.roll: _fn(torch.roll, 3),
    aten.pad: _fn(F.pad, 4),
    aten.constant_pad_nd: _constant_pad,
    aten.reflection_pad1d: _pad_mode("reflect"),
    aten.reflection_pad2d: _pad_mode("reflect"),
    aten.reflection_pad3d: _pad_mode("reflect"),
    aten.replication_pad1d: _pad_mode("replicate"),
    aten.replication_pad2d: _pad_mode("replicate"),
    aten.replication_pad3d: _pad_mode("replicate"),
    aten.pixel_shuffle: _fn(F.pixel_shuffle, 2),
    aten.pixel_unshuffle: _fn(F.pixel_unshuffle, 2),
    # reductions and pooling
    aten.mean: _fn(torch.mean, 3, keep=("dtype",)),
    aten.sum: _fn(torch.sum, 3, keep=("dtype",)),
    aten.amax: _fn(torch.amax, 3),
    aten.amin: _fn(torch.amin, 3),
    aten.max: _fn(torch.max, 3),  # all, over a dim (values, indices), or elementwise
    aten.min: _fn(torch.min, 3),
    aten.max_pool1d: _pool(F.max_pool1d, 2),
    aten.max_pool2d: _pool(F.max_pool2d, 2),
    aten.avg_pool1d: _pool(F.avg_pool1d, 2),
    aten.avg_pool2d: _pool(F.avg_pool2d, 2),
    aten.adaptive_avg_pool1d: _fn(F.adaptive_avg_pool1d, 2),
    aten.adaptive_avg_pool2d: _fn(F.adaptive_avg_pool2d, 2),
    aten._adaptive_avg_pool2d: _fn(F.adaptive_avg_pool2d, 2),
    # identities
    aten.dropout: _dropout,
    aten.contiguous: _method("contiguous", 1),  # kept: a later view may need it
    aten.clone: _method("clone", 1),
    **dict.fromkeys(_IDENTITY, _forward),
}  # fmt: skip
"""aten op (overload packet) → rule rewriting its arguments into a torch-level call."""

FIRST_OF_PAIR: dict[Any, _Rule] = {
    aten.adaptive_max_pool1d: _fn(F.adaptive_max_pool1d, 2),
    aten.adaptive_max_pool2d: _fn(F.adaptive_max_pool2d, 2),
    aten.max_pool2d_with_indices: _pool(F.max_pool2d, 2),
}
"""Ops returning ``(values, indices)`` whose values alone map to a torch function (the indices
must be unused)."""


def rewrite(packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """The torch-level call for one aten op, or ``None`` when it has no mapping.

    >>> rewrite(torch.ops.aten.relu, ("x",), {})[1] is torch.relu
    True
    >>> rewrite(torch.ops.aten.add, ("x", "y"), {"alpha": 2}) is None
    True
    """
    rule = ATEN.get(packet) or FIRST_OF_PAIR.get(packet)
    return None if rule is None else rule(args, kwargs)
