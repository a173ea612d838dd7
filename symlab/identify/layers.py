"""Read a layer's inputs and weights from a model, for :func:`function_classes`."""

from __future__ import annotations

import torch
from torch import nn

from symlab.errors import DataError, UnsupportedOpError
from symlab.identify.function_classes import FunctionClasses, function_classes_from_weights
from symlab.identify.support import support as make_support
from symlab.nn.asymmetric import WAsymLinear

__all__ = ["function_classes", "layer_inputs"]


def _module(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | WAsymLinear)]
        raise DataError(f"no layer {layer!r} in the model; linear layers: {names}") from None


def layer_inputs(model: nn.Module, data: torch.Tensor, layer: str) -> torch.Tensor:
    """The inputs the module at path ``layer`` receives when ``model`` runs on ``data``
    (flattened to (samples, features)).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([4, 8, 2], seed=0)
    >>> tuple(layer_inputs(net, torch.randn(64, 4), "head").shape)  # the hidden activations
    (64, 8)
    """
    module = _module(model, layer)
    seen: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            model(data)
    finally:
        handle.remove()
    if not seen:
        raise DataError(f"layer {layer!r} was not called on this data")
    x = seen[0]
    if isinstance(module, nn.Conv1d | nn.Conv2d) or hasattr(module, "kernel_size"):
        return _patches(module, x)
    return x.reshape(-1, x.shape[-1])


def _patches(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Input patches of a convolution, one row per (sample, position): (N·L, C·k…)."""
    if getattr(module, "groups", 1) != 1:
        raise UnsupportedOpError("function classes of grouped convolutions are not supported")
    if x.ndim == 3:  # Conv1d: treat as a 2-D convolution of height 1
        x = x.unsqueeze(2)
        k, st, pad, dil = ((1, module.kernel_size[0]), (1, module.stride[0]),
                           (0, module.padding[0]), (1, module.dilation[0]))  # fmt: skip
    else:
        k, st, pad, dil = module.kernel_size, module.stride, module.padding, module.dilation
    cols = torch.nn.functional.unfold(x, k, dilation=dil, padding=pad, stride=st)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def function_classes(
    model: nn.Module,
    data: torch.Tensor,
    layer: str,
    explained_variance: float = 0.9,
    *,
    k: int | None = None,
) -> FunctionClasses:
    """Effective function classes of the units of ``layer`` (the module path of a linear or
    convolutional layer, standard or W-asymmetric) on the support of its inputs over ``data``
    (Bürgin et al., ICML 2026). A convolution's unit is an output channel; its inputs are the
    patches it reads at every position (so positions count as samples).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([5, 8, 2], asym={"num_fixed": 2, "kappa": 1.0})
    >>> fc = function_classes(net, torch.randn(64, 5), "layers.0.linear", k=5)
    >>> tuple(fc.realization_cost().shape)
    (8, 8)
    """
    module = _module(model, layer)
    if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
        weight, mask, fixed = module.weight, None, None
    elif hasattr(module, "mask") and hasattr(module, "fixed"):  # W-asymmetric linear/conv
        weight, mask, fixed = module.weight, module.mask, module.fixed
    else:
        raise UnsupportedOpError(
            "function classes are implemented for linear and convolutional layers (standard "
            f"and W-asymmetric); {layer!r} is a {type(module).__name__}"
        )
    flat = weight.shape[0], -1  # a convolution's unit reads a patch: its kernel, flattened
    weight = weight.reshape(flat)
    mask = None if mask is None else mask.reshape(flat)
    fixed = None if fixed is None else fixed.reshape(flat)
    x = layer_inputs(model, data, layer)
    supp = make_support(x, explained_variance, k=k)
    return function_classes_from_weights(weight, supp, mask, fixed)
