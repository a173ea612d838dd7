"""Tensor shapes of every node of a traced ``fx.GraphModule``, from one run of the example input.

This is what :class:`torch.fx.passes.shape_prop.ShapeProp` does (the same entries
``node.meta["tensor_meta"]`` and ``node.meta["type"]``, the same error on a failing node), at a
fraction of its cost:

* the graph runs on *fake* tensors (``torch._subclasses.FakeTensorMode``): every op computes its
  output's shape, dtype and strides and no values, so the time does not grow with the size of
  the input or of the model, and nothing of the model (running statistics) is written. Where
  fake tensors cannot run a graph (an output shape that depends on values, module hooks that
  read values), it runs for real, as below. The parameters and buffers are made fake once each
  (modules run through ``torch.func.functional_call`` on them): an op reading a real tensor
  bypasses the fake mode's cache of output shapes, which otherwise serves every repeated block
  of a transformer from its first (GPT-2 small: 0.3 s → 0.12 s);
* the nodes run in a plain loop (no ``Interpreter`` dispatch per node) and the tensor metadata is
  read with torch's C++ contiguity checks;
* in a real run, when no shape can depend on values, convolutions are not computed. Where every
  node of the graph is a known value-blind op (convolutions, linear maps, eval-mode batch norms,
  activations, pools, sums, reshapes, …: :func:`shape_only_ok`), an unhooked ``nn.Conv1d/2d/3d``
  returns zeros of the shape torch's convolution formula gives, and an eval-mode batch norm
  reading such zeros returns them unchanged — the shapes of all nodes stay the same (no op
  looks at values) while the arithmetic of a CNN's forward pass, nearly all of it in
  convolutions, is skipped. Any other graph (custom leaves, train-mode batch norms, indexing by
  tensors, …) runs exactly, value by value.
"""

from __future__ import annotations

import builtins
import operator
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.passes.shape_prop import TensorMetadata, _extract_tensor_metadata
from torch.nn.modules import module as _module

from symlab.frontend.functions import (
    ACT_FUNCS,
    ADD_FUNCS,
    FLATTEN_FUNCS,
    IDENTITY_FUNCS,
    MEAN_FUNCS,
    MUL_FUNCS,
    OPAQUE_FUNCS,
    POOL_FUNCS,
)
from symlab.frontend.fxutil import flat_nodes
from symlab.frontend.modules import _ACT_TYPES
from symlab.frontend.units import writes

try:  # torch's own lazily compiled GraphModule (code generated on first call, if ever)
    from torch.fx._lazy_graph_module import _LazyGraphModule as _GraphModule
except ImportError:  # pragma: no cover - older or newer torch
    _GraphModule = fx.GraphModule

__all__ = ["graph_module", "record_shapes", "shape_only_ok"]

_CONVS: dict[type[nn.Module], int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
# modules whose output (shape and side effects) never depends on the values of their input
_VALUE_BLIND_MODULES: set[type[nn.Module]] = {
    *_CONVS, *_ACT_TYPES, nn.Linear, nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.Dropout3d, nn.LayerNorm, nn.GroupNorm, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
}  # fmt: skip
# batch norms: value-blind unless they update running statistics (training mode); input ranks
_NORM_RANKS: dict[type[nn.Module], tuple[int, ...]] = {
    nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,),
}  # fmt: skip
# functions and tensor methods whose output shape never depends on values (all pure torch ops)
_VALUE_BLIND_FUNCS: set[Any] = {
    *ACT_FUNCS, *ADD_FUNCS, *MUL_FUNCS, *FLATTEN_FUNCS, *MEAN_FUNCS, *POOL_FUNCS,
    *IDENTITY_FUNCS, *OPAQUE_FUNCS, torch.cat, torch.concat, builtins.getattr, "size", "dim",
}  # fmt: skip
_FORMATS = (torch.contiguous_format, torch.channels_last, torch.channels_last_3d)


def _hooked(mod: nn.Module) -> bool:
    return bool(
        mod._forward_hooks or mod._forward_pre_hooks or mod._backward_hooks
        or mod._backward_pre_hooks or "forward" in mod.__dict__
    )  # fmt: skip


def _global_hooks() -> bool:
    return bool(
        _module._global_forward_hooks or _module._global_forward_pre_hooks
        or _module._global_backward_hooks or _module._global_backward_pre_hooks
    )  # fmt: skip


def shape_only_ok(gm: fx.GraphModule, modules: dict[fx.Node, Any]) -> bool:
    """Whether no node of ``gm`` looks at tensor values (so convolutions may return zeros).

    ``modules`` maps each ``call_module`` node to its module. Also false under module hooks,
    active torch function / dispatch modes or autocast.

    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    >>> gm = fx.symbolic_trace(net)
    >>> shape_only_ok(gm, {n: gm.get_submodule(n.target) for n in gm.graph.nodes
    ...                    if n.op == "call_module"})
    True
    """
    if (
        _global_hooks()
        or torch._C._len_torch_function_stack()
        or torch._C._len_torch_dispatch_stack()
        or any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda"))
    ):
        return False
    for n in gm.graph.nodes:
        if n.op == "call_module":
            mod = modules[n]
            t = type(mod)
            if _hooked(mod) or n.kwargs:
                return False
            if t not in _VALUE_BLIND_MODULES and not (t in _NORM_RANKS and not mod.training):
                return False
        elif n.op in ("call_function", "call_method"):
            try:
                if n.target not in _VALUE_BLIND_FUNCS:
                    return False
            except TypeError:  # an unhashable target
                return False
            if n.target is operator.getitem and flat_nodes(n.args[1:]):
                return False  # indexing by a computed value (possibly a boolean mask)
    return True


def _conv_zeros(mod: nn.Module, args: tuple[Any, ...]) -> torch.Tensor | None:
    """Zeros shaped like ``mod(*args)`` for a plain convolution, or None where unsure."""
    d = _CONVS[type(mod)]
    if len(args) != 1 or mod.padding_mode != "zeros":
        return None
    x, w, b = args[0], mod._parameters["weight"], mod._parameters["bias"]
    if (
        type(x) is not torch.Tensor
        or x.dim() != d + 2
        or x.layout != torch.strided
        or x.dtype not in (torch.float32, torch.float64)
        or x.dtype != w.dtype
        or x.device != w.device
        or (b is not None and (b.dtype != x.dtype or b.device != x.device))
        or x.shape[1] != mod.in_channels
        or not x.is_contiguous()
        or not w.is_contiguous()
        or x.numel() == 0
    ):
        return None
    padding = (0,) * d if mod.padding == "valid" else mod.padding
    out = [x.shape[0], mod.out_channels]
    for i in range(d):
        size = x.shape[2 + i]
        reach = mod.dilation[i] * (mod.kernel_size[i] - 1) + 1
        if padding == "same":
            out.append(size)  # torch requires stride 1 for "same"
            continue
        span = size + 2 * padding[i]
        if span < reach:
            return None  # torch raises: let it
        out.append((span - reach) // mod.stride[i] + 1)
    zeros = torch.zeros(out, dtype=x.dtype, device=x.device)
    zeros._symlab_scratch = True  # ours alone: a batch norm may pass it on (no one else sees it)
    return zeros


def _norm_passthrough(mod: nn.Module, args: tuple[Any, ...]) -> torch.Tensor | None:
    """The input itself (same shape, dtype, strides) for an eval-mode batch norm with running
    statistics reading a convolution's scratch zeros (never a tensor the caller could see);
    None where unsure."""
    if len(args) != 1 or mod.training or not getattr(args[0], "_symlab_scratch", False):
        return None
    x, mean = args[0], mod._buffers.get("running_mean")
    w = mod._parameters.get("weight")
    if (
        mean is None
        or type(x) is not torch.Tensor
        or x.dim() not in _NORM_RANKS[type(mod)]
        or x.layout != torch.strided
        or x.dtype not in (torch.float32, torch.float64)
        or x.dtype != mean.dtype
        or x.device != mean.device
        or (w is not None and (w.dtype != x.dtype or w.device != x.device))
        or x.shape[1] != mod.num_features
        or not x.is_contiguous()
        or x.numel() == 0
    ):
        return None
    return x


def _tensor_meta(t: torch.Tensor) -> TensorMetadata:
    if t.is_quantized or t.layout != torch.strided:
        return _extract_tensor_metadata(t)
    fmt = None
    for f in _FORMATS:
        if t.is_contiguous(memory_format=f):
            fmt = f
            break
    return TensorMetadata(t.shape, t.dtype, t.requires_grad, t.stride(), fmt, False, {})


def _record(node: fx.Node, value: Any) -> None:
    found = False

    def meta(obj: Any) -> Any:
        nonlocal found
        if isinstance(obj, torch.Tensor):
            found = True
            return _tensor_meta(obj)
        return obj

    if isinstance(value, torch.Tensor):
        node.meta["tensor_meta"] = _tensor_meta(value)
    else:
        m = fx.node.map_aggregate(value, meta)
        if found:
            node.meta["tensor_meta"] = m
    node.meta["type"] = torch.Tensor if type(value) is FakeTensor else type(value)


def _fetch_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    atoms = target.split(".")
    for i, atom in enumerate(atoms):
        if not hasattr(obj, atom):
            missing = ".".join(atoms[: i + 1])
            raise RuntimeError(f"Node referenced nonexistent target {missing}")
        obj = getattr(obj, atom)
    return obj


def graph_module(model: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """``fx.GraphModule(model, graph)`` after ``graph.eliminate_dead_code()`` (which keeps in-place
    writes), cheaper: dead code
    elimination runs only where some node is unused (or reads an attribute, which may hold a
    subgraph), and the module's Python code is generated only if it is ever called (symlab only
    reads its graph and submodules).

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> gm = graph_module(net, fx.Tracer().trace(net))
    >>> [n.op for n in gm.graph.nodes], gm(torch.ones(1, 2)).shape
    (['placeholder', 'call_module', 'call_module', 'output'], torch.Size([1, 3]))
    """
    graph.owning_module = model
    if any(
        n.op == "get_attr" or (not n.users and n.op not in ("placeholder", "output"))
        for n in graph.nodes
    ):  # in-place writes stay: another tensor may see them (symlab.frontend.units)
        graph.eliminate_dead_code(is_impure_node=lambda n: n.is_impure() or writes(n))
    return _GraphModule(model, graph)


def _fetch_module(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for atom in target.split("."):
        sub = obj._modules.get(atom) if isinstance(obj, nn.Module) else None
        if sub is None:
            return _fetch_attr(root, target)
        obj = sub
    return obj


def record_shapes(gm: fx.GraphModule, inputs: tuple[Any, ...], *, fake: bool = True) -> Any:
    """Run ``inputs`` through ``gm`` once (without gradients), recording on every node
    ``meta["tensor_meta"]`` (a :class:`~torch.fx.passes.shape_prop.TensorMetadata`, or a
    structure of them for tuple outputs; absent where no tensor came out) and ``meta["type"]``,
    as ``ShapeProp(gm).propagate(*inputs)`` does; returns the output (fake tensors where the run
    was fake). The run is on fake tensors where it can be (``fake=False`` to run for real);
    convolutions of a real run are skipped where no node looks at values (module docstring). A
    node that fails raises the RuntimeError ShapeProp raises (``"ShapeProp error for: node=…"``),
    chained to the original error.

    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten())
    >>> gm = fx.symbolic_trace(net)
    >>> _ = record_shapes(gm, (torch.randn(2, 1, 7, 7),))
    >>> [tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes if n.op != "output"]
    [(2, 1, 7, 7), (2, 4, 3, 3), (2, 4, 3, 3), (2, 36)]
    """
    modules = {n: _fetch_module(gm, n.target) for n in gm.graph.nodes if n.op == "call_module"}
    with torch.no_grad():
        if fake and _fake_ok(modules):
            try:
                with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                    fakes = fx.node.map_aggregate(
                        inputs, lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t
                    )
                    out = _run(gm, tuple(fakes), modules, skip_convs=False, fake=mode)
                if not _mixed_dtypes(gm, modules):
                    return out
            except Exception:  # what fake tensors cannot run, runs for real
                pass
            for n in gm.graph.nodes:
                n.meta.pop("tensor_meta", None)
        # the model may write into its input (``h.tanh_()``): the caller's tensors stay as given
        copies = fx.node.map_aggregate(
            inputs, lambda t: t.clone() if isinstance(t, torch.Tensor) else t
        )
        return _run(gm, tuple(copies), modules, shape_only_ok(gm, modules))


def _float_dtypes(meta: Any) -> set[torch.dtype]:
    """The floating dtypes in a node's ``tensor_meta`` (one, or a structure of them)."""
    if isinstance(meta, TensorMetadata):
        return {meta.dtype} if meta.dtype.is_floating_point else set()
    if isinstance(meta, tuple | list):
        return set().union(*(_float_dtypes(m) for m in meta))
    if isinstance(meta, dict):
        return set().union(*(_float_dtypes(m) for m in meta.values()))
    return set()


def _mixed_dtypes(gm: fx.GraphModule, modules: dict[fx.Node, Any]) -> bool:
    """Whether some node reads floating tensors of several dtypes (its own parameters
    included). Fake tensors do not check what real kernels refuse (a float32 input to a float64
    ``Linear``), so such a graph runs for real: the error, or a legitimate promotion, is real."""
    for n in gm.graph.nodes:
        dtypes = set().union(
            *(_float_dtypes(a.meta.get("tensor_meta")) for a in flat_nodes((n.args, n.kwargs)))
        )
        if n.op == "call_module" and isinstance(modules[n], nn.Module):
            dtypes |= {p.dtype for p in modules[n].parameters() if p.is_floating_point()}
        if len(dtypes) > 1:
            return True
    return False


def _fake_ok(modules: dict[fx.Node, Any]) -> bool:
    """Whether the graph may run on fake tensors: no hooks (they may read values or keep what
    they see) and no active torch function or dispatch modes."""
    return not (
        _global_hooks()
        or torch._C._len_torch_function_stack()
        or torch._C._len_torch_dispatch_stack()
        or any(
            _hooked(s) for m in modules.values() if isinstance(m, nn.Module) for s in m.modules()
        )
    )


def _state(mod: nn.Module, fake: FakeTensorMode) -> dict[str, torch.Tensor]:
    """The parameters and buffers of ``mod`` as ``fake`` tensors (memoized by the mode: one fake
    per tensor, shared weights stay shared)."""
    params = mod.named_parameters(remove_duplicate=False)
    buffers = mod.named_buffers(remove_duplicate=False)
    return {k: fake.from_tensor(t) for k, t in (*params, *buffers)}


def _run(
    gm: fx.GraphModule,
    inputs: tuple[Any, ...],
    modules: dict[fx.Node, Any],
    skip_convs: bool,
    fake: FakeTensorMode | None = None,
) -> Any:
    """Run ``gm``'s nodes in order. Under the fake tensor mode ``fake``, parameters and buffers
    (read by ``get_attr`` or by a module's own code) are read as fake tensors made once each:
    an op on a real tensor bypasses the mode's cache of output shapes, and a model's repeated
    blocks then cost one shape computation per distinct op."""
    graph = gm.graph
    nodes = list(graph.nodes)
    last_use: dict[fx.Node, list[fx.Node]] = {}  # free values after their last use
    seen: set[fx.Node] = set()
    for n in reversed(nodes):
        for a in flat_nodes((n.args, n.kwargs)):
            if a not in seen:
                seen.add(a)
                last_use.setdefault(n, []).append(a)
    env: dict[fx.Node, Any] = {}
    args_iter = iter(graph.process_inputs(*inputs))
    for n in nodes:
        try:
            args, kwargs = fx.node.map_arg((n.args, n.kwargs), env.__getitem__)
            op = n.op
            if op == "placeholder":
                if n.target.startswith("*"):
                    value: Any = list(args_iter)
                else:
                    value = next(args_iter, _MISSING)
                    if value is _MISSING:
                        if not args:
                            raise RuntimeError(
                                f"Expected positional argument for parameter {n.target}, "
                                "but one was not passed in!"
                            )
                        value = args[0]
            elif op == "get_attr":
                value = _fetch_attr(gm, n.target)
            elif op == "call_function":
                value = n.target(*args, **kwargs)
            elif op == "call_method":
                value = getattr(args[0], n.target)(*args[1:], **kwargs)
            elif op == "call_module":
                mod = modules[n]
                value = None
                if skip_convs:
                    t = type(mod)
                    if t in _CONVS:
                        value = _conv_zeros(mod, args)
                    elif t in _NORM_RANKS:
                        value = _norm_passthrough(mod, args)
                if value is None and fake is not None and isinstance(mod, nn.Module):
                    value = torch.func.functional_call(mod, _state(mod, fake), args, kwargs)
                elif value is None:
                    value = mod(*args, **kwargs)
            else:  # output
                value = args[0]
        except Exception as e:
            where = f"node={n.format_node()} with meta={n.meta}"
            raise RuntimeError(f"ShapeProp error for: {where}") from e
        _record(n, value)  # a parameter read by get_attr is recorded as one (ShapeProp's type)
        if n.op == "output":
            return graph.process_outputs(value)
        if fake is not None and n.op == "get_attr" and isinstance(value, torch.Tensor):
            value = fake.from_tensor(value)
        env[n] = value
        for dead in last_use.get(n, ()):
            del env[dead]
    return None


_MISSING = object()
