"""Recognising a model that is one chain of ``nn.Linear`` layers and ReLUs, and running it with
the ReLUs in place (part of the engine of :func:`symlab.connect.interpolate` on CPU).

A forward pass of such a model through its modules allocates a new tensor for every ReLU and,
for a :class:`~symlab.nn.GraphNet`, keeps every node's output until the pass ends; on row blocks
sized to stay in cache that costs about a tenth of the pass. :func:`find_chain` proves that a
model computes ``x → Linear → [ReLU] → Linear → [ReLU] → …`` and nothing else, and
:meth:`Chain.bind` runs exactly those calls, each ReLU in place on the fresh output of the
Linear before it: the same values, bit for bit (callers still compare one block, see
:func:`symlab.connect.path_eval.per_alpha`). :meth:`Chain.bind_buffered` goes further for the
points between a curve's endpoints: products into buffers reused by every call, each bias added
after its product (``addmm``'s bias-inside path costs more on CPU than the pass it saves), the
same function rounded in another order.

Fail closed: anything not proven is not a chain (``None``) and runs through its own forward —
a module of another type, a subclass of ``nn.Linear`` or ``nn.ReLU`` (its forward may differ),
a module with hooks or an instance-level ``forward``, a forward that torch.fx cannot trace,
more than one input, an output read twice (a residual), a ReLU on the model's input (in place
it would change the caller's data), or any other operation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules import module as _module

__all__ = ["Chain", "find_chain"]

_RELU_FUNCS: tuple[Any, ...] = (F.relu, torch.relu, F.relu_, torch.relu_)
_RELU_METHODS = ("relu", "relu_")


@dataclass(frozen=True)
class Chain:
    """``steps``: the chain's ``nn.Linear`` modules by qualified name, in call order, each with
    whether a ReLU follows it."""

    steps: tuple[tuple[str, bool], ...]

    def bind(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """A function computing ``model``'s output (a model with the same module names: the
        one :func:`find_chain` read, or a copy of it) with each ReLU in place."""
        mods = [(model.get_submodule(name), relu) for name, relu in self.steps]

        def run(x: torch.Tensor) -> torch.Tensor:
            for mod, relu in mods:
                x = mod(x)
                if relu:
                    x = x.relu_()  # x is the Linear's own new output
            return x

        return run

    def bind_buffered(
        self,
        model: nn.Module,
        served: nn.Module | None = None,
        into: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> Callable[..., torch.Tensor]:
        """Like :meth:`bind` for 2-D inputs whose dtype is the weights', with fewer memory
        passes: each Linear's product goes into a buffer kept between calls
        (``torch.mm(..., out=)``), then its bias is added and its ReLU applied in place, both
        on data still in cache. ``addmm`` adds the bias inside its blocked product (a slower
        path on CPU), so the floats differ from :meth:`bind`'s in the last bits: the same
        function, rounded in another order. ``served`` (the engine's input layer, whose
        output comes from precomputed products) is called as it is, or as ``into(x, buffer)``
        when ``into`` is given: that writes the layer's output into the buffer and returns it.

        The function returned takes ``(x, out=None)``: the last Linear writes into ``out``
        (``len(x)`` rows) when given, else into a buffer that the next call overwrites."""
        mods = [(model.get_submodule(name), relu) for name, relu in self.steps]
        bufs: list[torch.Tensor | None] = [None] * len(mods)
        last = len(mods) - 1

        def run(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            n = len(x)
            for i, (mod, relu) in enumerate(mods):
                if mod is served and into is None:
                    x = mod(x) if out is None or i < last else out.copy_(mod(x))
                else:
                    w, b = mod.weight, mod.bias
                    dest = out if out is not None and i == last else None
                    if dest is None:
                        buf = bufs[i]
                        if buf is None or len(buf) < n:
                            buf = bufs[i] = x.new_empty(n, w.shape[0])
                        dest = buf[:n]
                    if mod is served:
                        x = into(x, dest)  # type: ignore[misc]  # into is not None here
                    else:
                        x = torch.mm(x, w.t(), out=dest)
                        if b is not None:
                            x.add_(b)
                if relu:
                    x = x.relu_()  # x is the Linear's own new output or a buffer
            return x

        return run


def _build(ops: list[tuple[str, str | None]]) -> Chain | None:
    """A chain from ``("linear", name)`` / ``("relu", None)`` items in call order, or None when
    a ReLU does not directly follow a Linear or nothing is computed."""
    steps: list[tuple[str, bool]] = []
    for kind, name in ops:
        if kind == "linear" and name is not None:
            steps.append((name, False))
        elif kind == "relu" and steps and not steps[-1][1]:
            steps[-1] = (steps[-1][0], True)
        else:
            return None
    return Chain(tuple(steps)) if steps else None


def _kind(mod: Any) -> str | None:
    """ "linear" / "relu" for exactly those classes running their class's forward (hooks are
    refused for the whole model by :func:`find_chain`)."""
    if "forward" in getattr(mod, "__dict__", {}):
        return None
    return {nn.Linear: "linear", nn.ReLU: "relu"}.get(type(mod))


def _from_graphnet(model: nn.Module) -> Chain | None:
    from symlab.nn.graphnet import GraphNet

    cls = type(model)
    if cls.forward is not GraphNet.forward or cls.forward_all is not GraphNet.forward_all:
        return None
    path = model.path()  # type: ignore[operator]
    if path is None:
        return None
    ops: list[tuple[str, str | None]] = []
    for name, op, mod in path[1:-1]:  # path() starts at the input and ends at the output
        kind = _kind(mod) if op in ("linear", "activation") else None
        if kind is None:
            return None
        ops.append((kind, name if kind == "linear" else None))
    return _build(ops)


def _from_fx(model: nn.Module) -> Chain | None:
    import torch.fx as fx

    try:
        with warnings.catch_warnings():  # a failed or partial trace is not the user's concern
            warnings.simplefilter("ignore")
            gm = fx.symbolic_trace(model)
    except Exception:  # any failure to trace means "not proven"
        return None
    nodes = list(gm.graph.nodes)
    if len(nodes) < 3 or nodes[0].op != "placeholder" or nodes[-1].op != "output":
        return None
    prev, ops = nodes[0], []
    for node in nodes[1:-1]:
        if node.args != (prev,) or len(prev.users) != 1:
            return None  # not fed by the previous node alone, or its value is read again
        if node.op == "call_module":
            mod = model.get_submodule(str(node.target))
            kind = _kind(mod)
        elif node.op == "call_function" and node.target in _RELU_FUNCS:
            kind = "relu" if set(node.kwargs) <= {"inplace"} else None
        elif node.op == "call_method" and node.target in _RELU_METHODS:
            kind = "relu" if not node.kwargs else None
        else:
            kind = None
        if kind is None:
            return None
        ops.append((kind, str(node.target) if kind == "linear" else None))
        prev = node
    if nodes[-1].args != (prev,) or len(prev.users) != 1:
        return None  # the output is not exactly the last node's tensor
    return _build(ops)


def find_chain(model: nn.Module) -> Chain | None:
    """The :class:`Chain` ``model`` computes, or None when that is not proven (module docs).

    Read from a :class:`~symlab.nn.GraphNet`'s graph (e.g. :class:`symlab.nn.MLP`) or from a
    torch.fx trace of the model as it is now (its current train/eval mode).

    >>> import symlab as sl
    >>> find_chain(sl.nn.MLP([3, 5, 2])).steps
    (('layers.0.linear', True), ('head', False))
    >>> find_chain(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))).steps
    (('0', True), ('2', False))
    >>> find_chain(nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))) is None
    True
    """
    from symlab.nn.graphnet import GraphNet

    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return None
    if "forward" in model.__dict__ or any(
        m._forward_hooks or m._forward_pre_hooks for m in model.modules()
    ):
        return None
    if isinstance(model, GraphNet):
        return _from_graphnet(model)
    return _from_fx(model)
