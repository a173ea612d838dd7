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
    (flattened to (samples, features))."""
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
    return x.reshape(-1, x.shape[-1])


def function_classes(
    model: nn.Module,
    data: torch.Tensor,
    layer: str,
    explained_variance: float = 0.9,
    *,
    k: int | None = None,
) -> FunctionClasses:
    """Effective function classes of the units of ``layer`` (a Linear or W-asymmetric linear
    module path) on the support of its inputs over ``data`` (Bürgin et al., ICML 2026).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([5, 8, 2], asym={"num_fixed": 2, "kappa": 1.0})
    >>> fc = function_classes(net, torch.randn(64, 5), "layers.0.linear", k=5)
    >>> tuple(fc.realization_cost().shape)
    (8, 8)
    """
    module = _module(model, layer)
    if isinstance(module, WAsymLinear):
        weight, mask, fixed = module.weight, module.mask, module.fixed
    elif isinstance(module, nn.Linear):
        weight, mask, fixed = module.weight, None, None
    else:
        raise UnsupportedOpError(
            f"function classes are implemented for Linear and W-asymmetric linear layers; "
            f"{layer!r} is a {type(module).__name__}"
        )
    x = layer_inputs(model, data, layer)
    supp = make_support(x, explained_variance, k=k)
    return function_classes_from_weights(weight, supp, mask, fixed)
