"""Read a layer's inputs and weights from a model, for :func:`function_classes`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from symlab.errors import ArchitectureMismatchError, DataError, StateDictError, UnsupportedOpError
from symlab.identify.function_classes import FunctionClasses, function_classes_from_weights
from symlab.identify.support import Support
from symlab.identify.support import support as make_support
from symlab.nn.asymmetric import WAsymLinear

__all__ = [
    "check_group",
    "check_inputs",
    "check_pair",
    "data_inputs",
    "function_classes",
    "layer_inputs",
    "layer_io",
    "layer_parts",
    "run_hooked",
    "support_coefficients",
]


def data_inputs(data: Any, what: str, split: str = "test") -> torch.Tensor:
    """The input tensor of ``data`` (a Dataset's ``split``, a tensor, or ``(x, y)``), checked to
    be a float tensor with at least 2 rows; ``what`` names the caller in the error.

    >>> tuple(data_inputs((torch.zeros(4, 3), torch.zeros(4)), "demo").shape)
    (4, 3)
    """
    from symlab.align.data import split_tensors

    t = split_tensors(data, split)
    if t is None:
        raise DataError(
            f"{what}: data must be a symlab Dataset, an input tensor or a tuple (x, y) of "
            f"tensors held in memory, got {type(data).__name__}"
        )
    x = t[0]
    if not x.is_floating_point() or x.ndim < 2:
        raise DataError(f"{what}: data inputs must be a float tensor (samples, features…), got "
                        f"{x.dtype} of shape {tuple(x.shape)}")  # fmt: skip
    if len(x) < 2:
        raise DataError(f"{what}: data has {len(x)} row(s); at least 2 samples are needed")
    return x


def check_inputs(model: nn.Module, x: torch.Tensor, *, argument: str = "data",
                 model_name: str = "model") -> None:  # fmt: skip
    """Raise a :class:`DataError` naming ``argument`` unless ``model`` runs on ``x`` (tried on
    its first two rows), instead of the deep ``RuntimeError`` torch would raise.

    >>> import symlab as sl
    >>> check_inputs(sl.nn.MLP([4, 8, 2]), torch.zeros(5, 4))
    >>> try:
    ...     check_inputs(sl.nn.MLP([4, 8, 2]), torch.zeros(5, 3), argument="x")
    ... except DataError as err:
    ...     print(str(err)[:60])
    x has inputs of shape (3,) but model's first layer layers.0.
    """
    first = next(((n, m) for n, m in model.named_modules() if hasattr(m, "in_features")), None)
    try:
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(x[:2].clone())  # a copy: a forward may write into its input
        finally:
            model.train(was)
    except (RuntimeError, IndexError, ValueError) as err:
        if first is not None and x.ndim == 2 and x.shape[1] != first[1].in_features:
            want = f"'s first layer {first[0]} reads {first[1].in_features} features"
        else:
            want = f" does not accept them ({str(err).splitlines()[0][:120]})"
        raise DataError(
            f"{argument} has inputs of shape {tuple(x.shape[1:])} but {model_name}{want}: pass "
            "data of the model's input width"
        ) from None


def check_group(G: Any, model: nn.Module, *, model_name: str = "model_a") -> None:
    """Raise an :class:`ArchitectureMismatchError` unless the symmetry group ``G`` was derived
    from ``model``'s architecture (its parameter names and shapes).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([4, 8, 2])
    >>> check_group(sl.symmetries(net), net)
    >>> try:
    ...     check_group(sl.symmetries(sl.nn.MLP([4, 9, 2])), net)
    ... except ArchitectureMismatchError as err:
    ...     print(str(err)[:45])
    G was not derived from model_a's architecture
    """
    from symlab.symmetry.group import SymmetryGroup

    if not isinstance(G, SymmetryGroup):
        raise DataError(f"G must be a SymmetryGroup (symlab.symmetries({model_name})), got "
                        f"{type(G).__name__}")  # fmt: skip
    try:
        G.check_state_dict(model.state_dict())
    except StateDictError as err:
        raise ArchitectureMismatchError(
            f"G was not derived from {model_name}'s architecture ({err}); pass "
            f"G = symlab.symmetries({model_name}, example_input) or leave G out"
        ) from None


def check_pair(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    G: Any = None,
    *,
    argument: str = "data",
    example_input: Any = None,
) -> Any:
    """Check that two runs share one architecture and that ``x`` fits ``model_a`` (named
    errors), and return their symmetry group: ``G`` checked against ``model_a``, or derived from
    it on ``example_input`` (default: the first two rows of ``x``).

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> check_pair(a, b, torch.randn(8, 4)).log10_order > 0
    True
    """
    from symlab.api import symmetries
    from symlab.connect.interpolate import check_same_architecture

    check_same_architecture(model_a.state_dict(), model_b.state_dict())
    check_inputs(model_a, x, argument=argument, model_name="model_a")
    if G is None:
        return symmetries(model_a, x[:2] if example_input is None else example_input)
    check_group(G, model_a)
    return G


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


def _unit_rows(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """A layer's outputs with one row per (sample, position) and its units as columns."""
    if y.ndim > 2 and (isinstance(module, nn.Conv1d | nn.Conv2d) or hasattr(module, "kernel_size")):
        return y.movedim(1, -1).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


def run_hooked(
    model: nn.Module,
    modules: dict[str, nn.Module],
    x: Any,
    feed: tuple[str, Any] | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> tuple[Any, dict[str, list[tuple[tuple, Any]]]]:
    """``(network output, each module's calls as (inputs, output) in call order)`` when
    ``model`` runs on ``x`` in eval mode without gradients (its mode is restored) — with the
    first output of module ``feed[0]`` replaced by ``feed[1]`` if given, and with the tensors of
    ``state`` in place of the model's own (:func:`symlab.stateless.call_with_state`).

    >>> import symlab as sl
    >>> net = sl.nn.MLP([4, 8, 2], seed=0)
    >>> zero = ("head", torch.zeros(3, 2))  # the head's output replaced by zeros
    >>> y, calls = run_hooked(net, {"head": net.head}, torch.randn(3, 4), zero)
    >>> y.abs().sum().item(), len(calls["head"])
    (0.0, 1)
    """
    from symlab.stateless import call_with_state

    seen: dict[str, list[tuple[tuple, Any]]] = {name: [] for name in modules}

    def hook(name: str):
        def fn(m: nn.Module, args: tuple, out: Any) -> Any:
            seen[name].append((args, out))
            if feed is not None and feed[0] == name and len(seen[name]) == 1:
                return feed[1]
            return None

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = x.clone()  # a forward may write into its input
            y = model(x) if state is None else call_with_state(model, state, (x,))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return y, seen


def layer_io(
    model: nn.Module, data: torch.Tensor, layers: list[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer path: its inputs (rows × fan-in, patches for convolutions) and its outputs
    (rows × units, before any activation) when ``model`` runs on ``data``, in one pass.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([4, 8, 2], seed=0)
    >>> x, z = layer_io(net, torch.randn(16, 4), ["layers.0.linear"])["layers.0.linear"]
    >>> tuple(x.shape), tuple(z.shape)
    ((16, 4), (16, 8))
    """
    modules = {name: _module(model, name) for name in layers}
    _, calls = run_hooked(model, modules, data)
    seen = {name: (c[0][0][0].detach(), c[0][1].detach()) for name, c in calls.items() if c}
    out = {}
    for name, module in modules.items():
        if name not in seen:
            raise DataError(f"layer {name!r} was not called on this data")
        x, y = seen[name]
        xin = _patches(module, x) if x.ndim > 2 and hasattr(module, "kernel_size") else (
            x.reshape(-1, x.shape[-1]))  # fmt: skip
        out[name] = (xin, _unit_rows(module, y))
    return out


def support_coefficients(
    x: torch.Tensor, z: torch.Tensor, supp: Support
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients (n, k) of the functions ``z`` (rows × n) as linear functions of the centred
    inputs ``x`` restricted to ``supp`` (least squares on ``(x − x̄) U``), and per function the
    fraction of its variance they leave unexplained. For a linear layer on the support of its
    own inputs these are exactly the realised coefficients ``a_j = Uᵀ w_eff,j``.

    >>> from symlab.identify.support import support as supp
    >>> x = torch.randn(100, 3, dtype=torch.float64); w = torch.randn(2, 3, dtype=torch.float64)
    >>> s = supp(x, k=3); a, un = support_coefficients(x, x @ w.T + 1.0, s)
    >>> torch.allclose(a, w @ s.U), bool(un.max() < 1e-9)
    (True, True)
    """
    if x.ndim != 2 or z.ndim != 2 or len(x) != len(z) or x.shape[1] != supp.d:
        raise DataError(
            f"support_coefficients needs inputs (rows, {supp.d}) and functions (rows, units) "
            f"over the same rows, got {tuple(x.shape)} and {tuple(z.shape)}"
        )
    xc = x.double() - x.double().mean(0, keepdim=True)
    zc = z.double() - z.double().mean(0, keepdim=True)
    p = xc @ supp.U.double()
    coef = torch.linalg.lstsq(p, zc).solution  # (k, n)
    fit = p @ coef
    var = (zc**2).sum(0)
    unexplained = ((zc - fit) ** 2).sum(0) / var.clamp_min(1e-300)
    return coef.T.contiguous(), torch.where(var > 0, unexplained, torch.zeros_like(var))


def layer_parts(
    model: nn.Module, layer: str
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(weight, mask, fixed)`` of a linear or convolutional layer (standard: no mask, no
    fixed part), flattened to (units, fan-in).

    >>> import symlab as sl
    >>> w, mask, fixed = layer_parts(sl.nn.MLP([4, 8, 2]), "layers.0.linear")
    >>> tuple(w.shape), mask is None, fixed is None
    ((8, 4), True, True)
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
    return (weight.detach().reshape(flat),
            None if mask is None else mask.detach().reshape(flat),
            None if fixed is None else fixed.detach().reshape(flat))  # fmt: skip


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
    weight, mask, fixed = layer_parts(model, layer)
    if isinstance(data, torch.Tensor):
        check_inputs(model, data, argument="data")
    x = layer_inputs(model, data, layer)
    supp = make_support(x, explained_variance, k=k)
    return function_classes_from_weights(weight, supp, mask, fixed)
