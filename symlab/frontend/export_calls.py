"""The calls of leaf modules in a ``torch.export`` graph, and what each call reads and returns.

torch.export traces *into* every module; every node keeps the stack of modules it ran in
(``meta["nn_module_stack"]``). :class:`LeafCalls` groups the nodes of one call of each module
symlab treats as a leaf (the outermost one, by the torch.fx tracer's own test) and reads the
arguments and outputs of that call from forward hooks that watched torch.export's own run of the
model (:func:`recording_calls`: fake tensors, shapes only; no second run of the model).
Tensors are matched to graph nodes by position when a call reads one tensor, else by value:
then the model runs once for real, and so does the exported graph (:meth:`LeafCalls.value`), and
each argument is the node holding the same values. Used by :mod:`symlab.frontend.export`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.export.graph_signature import InputKind
from torch.utils import _pytree as pytree

from symlab.errors import TraceError
from symlab.frontend.fxutil import flat_nodes
from symlab.frontend.inputs import ExampleInputs
from symlab.frontend.tracer import Tracer

__all__ = ["Group", "LeafCalls", "recording_calls"]

Call = tuple[Any, Any, Any]  # (args, kwargs, output) of one module call
Calls = dict[nn.Module, list[Call]]  # every call of every submodule, in call order


@contextmanager
def recording_calls(model: nn.Module) -> Iterator[Calls]:
    """Record ``(args, kwargs, output)`` of every call of every submodule of ``model`` (not the
    root) while the body runs, with forward hooks removed afterwards. Wrapped around
    ``torch.export.export`` it records the calls export's run of the model makes (on export's
    fake tensors: shapes, no values), which is what :class:`LeafCalls` reads.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> with recording_calls(net) as calls:
    ...     _ = net(torch.randn(2, 3))
    >>> [(type(m).__name__, tuple(c[0][2].shape)) for m, c in calls.items()]
    [('Linear', (2, 4)), ('ReLU', (2, 4))]
    """
    calls: Calls = {}

    def pre(mod: nn.Module, args: Any, kwargs: Any) -> None:
        calls.setdefault(mod, []).append((args, kwargs, None))

    def post(mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        calls[mod][-1] = (*calls[mod][-1][:2], out)

    handles = []
    try:
        for m in {id(m): m for m in model.modules() if m is not model}.values():
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
        yield calls
    finally:
        for h in handles:
            h.remove()


class Group:
    """The export nodes of one call of one leaf module."""

    def __init__(self, path: str, module: nn.Module) -> None:
        self.path, self.module = path, module
        self.nodes: list[fx.Node] = []
        self.inputs: list[fx.Node] = []  # tensors read from outside, in order of first use
        self.outputs: list[fx.Node] = []  # nodes read from outside
        self.call: Call = ((), {}, None)


class LeafCalls:
    """The leaf-module calls of the exported program ``ep`` of ``model`` on ``inputs``;
    ``recorded`` holds the calls :func:`recording_calls` saw while ``ep`` was exported.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> x = torch.randn(2, 3)
    >>> with recording_calls(net) as recorded:
    ...     ep = torch.export.export(net, (x,), strict=False)
    >>> calls = LeafCalls(net, ep, ExampleInputs((x,)), [x], recorded)
    >>> [(g.path, [n.name for n in g.inputs]) for g in calls.groups.values()]
    [('0', ['input']), ('1', ['linear'])]
    """

    def __init__(
        self, model: nn.Module, ep: Any, inputs: ExampleInputs, flat: list[Any], recorded: Calls
    ) -> None:
        self.model, self.ep, self.inputs, self.flat = model, ep, inputs, flat
        self.kind: dict[str, tuple[InputKind, Any]] = {
            s.arg.name: (s.kind, s.target) for s in ep.graph_signature.input_specs
        }
        self.groups: dict[str, Group] = {}  # by nn_module_stack key: one per call
        self.group_of: dict[fx.Node, Group] = {}
        self._leaf: dict[str, bool] = {}
        self._values: dict[str, Any] | None = None
        self._find_groups()
        try:
            self._assign_calls(recorded)  # export's fake tensors: shapes only
            real = False
        except TraceError:  # export's run missed calls (e.g. modules it called outside hooks)
            self._assign_calls(self._run_for_real())
            real = True
        if not real and any(self._needs_values(g) for g in self.groups.values()):
            self._assign_calls(self._run_for_real())  # tensors are matched to nodes by value

    def state(self, kind: InputKind, target: str) -> torch.Tensor:
        """The parameter or buffer ``target`` of the model."""
        if kind == InputKind.PARAMETER:
            return self.model.get_parameter(target)
        return self.model.get_buffer(target)

    def _leaf_of(self, node: fx.Node) -> tuple[str, str] | None:
        """``(call key, module path)`` of the outermost leaf module ``node`` ran in."""
        for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
            if path and path not in self._leaf:
                try:
                    mod = self.model.get_submodule(path)
                except AttributeError as e:
                    raise TraceError(f"torch.export named a module {path!r} the model lacks") from e
                self._leaf[path] = Tracer().is_leaf_module(mod, path)
            if path and self._leaf[path]:
                return key, path
        return None

    def _owned(self, group: Group, node: fx.Node) -> bool:
        """Whether placeholder ``node`` is a parameter, buffer or constant of the call itself."""
        kind, target = self.kind.get(node.name, (None, None))
        if kind in (InputKind.CONSTANT_TENSOR, InputKind.CUSTOM_OBJ):
            return True
        if kind not in (InputKind.PARAMETER, InputKind.BUFFER):
            return False
        tensor = self.state(kind, target)
        return any(t is tensor for t in (*group.module.parameters(), *group.module.buffers()))

    def _find_groups(self) -> None:
        for node in self.ep.graph.nodes:
            leaf = self._leaf_of(node) if node.op == "call_function" else None
            if leaf is not None:
                key, path = leaf
                if key not in self.groups:
                    self.groups[key] = Group(path, self.model.get_submodule(path))
                self.groups[key].nodes.append(node)
                self.group_of[node] = self.groups[key]
        for g in self.groups.values():
            for n in g.nodes:
                for a in flat_nodes((n.args, n.kwargs)):
                    if self.group_of.get(a) is not g and a not in g.inputs \
                            and not (a.op == "placeholder" and self._owned(g, a)):  # fmt: skip
                        g.inputs.append(a)
                if any(self.group_of.get(u) is not g for u in n.users):
                    g.outputs.append(n)

    def _needs_values(self, g: Group) -> bool:
        """Whether reading group ``g``'s call needs real values: several tensor arguments or
        inputs to match, several outputs of one shape, or sizes export kept symbolic (rows
        picked by a mask: the example's run fixes them)."""
        args, kwargs, out = g.call
        leaves = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if leaves and not (len(leaves) == 1 and len(g.inputs) == 1):
            return True
        outs = [tuple(t.shape) for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        sizes = [
            d for t in (*leaves, *outs) for d in (t.shape if isinstance(t, torch.Tensor) else t)
        ]
        if any(isinstance(d, torch.SymInt) for d in sizes):
            return True
        return len(outs) != len(set(outs))

    def _run_for_real(self) -> Calls:
        """Every module call of one eager run of the example input, with real values."""
        with recording_calls(self.model) as calls:
            self.inputs.map(torch.clone).call(self.model)
        return calls

    def _assign_calls(self, recorded: Calls) -> None:
        """Give each group its call: the i-th group of a module (in graph order, which is call
        order) gets the module's i-th recorded call."""
        by_module = {g.module: recorded.get(g.module, []) for g in self.groups.values()}
        seen: dict[nn.Module, int] = {}
        for g in self.groups.values():  # in graph order, which is call order
            i = seen[g.module] = seen.get(g.module, -1) + 1
            if i < len(by_module[g.module]):
                g.call = by_module[g.module][i]
        if any(len(by_module[m]) != i + 1 for m, i in seen.items()):
            raise TraceError(
                "the calls of a leaf module in the torch.export graph do not match its calls when "
                "the model runs (is it also called inside another leaf module?)"
            )

    def value(self, node: fx.Node) -> Any:
        """The value of ``node`` on the example input (the exported graph is run once; a node
        computed from constants alone is computed alone)."""
        if self._values is None and self._constant_only(node):
            return self._constant_value(node)
        if self._values is None:
            flat, user = [], iter(self.flat)
            for spec in self.ep.graph_signature.input_specs:
                if spec.kind == InputKind.USER_INPUT:
                    x = next(user)
                    flat.append(x.clone() if isinstance(x, torch.Tensor) else x)
                elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                    flat.append(self.state(spec.kind, spec.target).clone())
                else:
                    flat.append(self.ep.constants[spec.target])
            interp = fx.Interpreter(self.ep.graph_module, garbage_collect_values=False)
            interp.run(*flat)
            self._values = {n.name: v for n, v in interp.env.items()}
        return self._values.get(node.name)

    def _constant_only(self, node: fx.Node) -> bool:
        seen, todo = set(), [node]
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.op == "placeholder":
                if self.kind[n.name][0] != InputKind.CONSTANT_TENSOR:
                    return False
            elif n.op != "call_function":
                return False
            todo.extend(flat_nodes((n.args, n.kwargs)))
        return True

    def _constant_value(self, node: fx.Node, memo: dict[fx.Node, Any] | None = None) -> Any:
        """The value of a node computed from constants alone (causal masks, ``arange``)."""
        memo = {} if memo is None else memo
        if node not in memo:
            if node.op == "placeholder":
                memo[node] = self.ep.constants[self.kind[node.name][1]]
            else:
                args, kwargs = fx.node.map_arg(
                    (node.args, node.kwargs), lambda a: self._constant_value(a, memo)
                )
                memo[node] = node.target(*args, **kwargs)
        return memo[node]

    def match(self, tensor: torch.Tensor, candidates: list[fx.Node], what: str) -> fx.Node:
        """The candidate whose value is ``tensor`` (the closest, within float32 rounding: the
        eager run may take fused fast paths)."""
        best, err = None, float("inf")
        for c in candidates:
            v = self.value(c)
            if isinstance(v, torch.Tensor) and v.shape == tensor.shape and v.dtype == tensor.dtype:
                d = (v.double() - tensor.double()).abs().max().item() if v.numel() else 0.0
                if d < err:
                    best, err = c, d
        scale = float(tensor.double().abs().max()) if tensor.numel() else 0.0
        if best is None or err > 1e-5 * (1.0 + scale):
            raise TraceError(f"{what}: no tensor of the torch.export graph matches it")
        return best

    def output_index(self, node: fx.Node, out: tuple[Any, ...], what: str) -> int:
        """Which element of the tuple ``out`` a call returned is ``node`` (shape, else value)."""
        val = node.meta.get("val")
        shape = tuple(val.shape) if isinstance(val, torch.Tensor) else None
        hits = [i for i, t in enumerate(out)
                if isinstance(t, torch.Tensor) and tuple(t.shape) == shape]  # fmt: skip
        if len(hits) > 1:
            v = self.value(node).double()
            hits = [i for i in hits if torch.allclose(out[i].double(), v, rtol=1e-5, atol=1e-6)]
        if len(hits) != 1:
            raise TraceError(f"{what}: cannot tell which of its outputs the graph reads")
        return hits[0]
