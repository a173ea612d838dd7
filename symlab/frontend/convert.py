"""From a torch.fx graph with shapes to an ArchGraph: one graph op per fx node.

The converter behind :func:`symlab.frontend.fx.trace_fx` (and the torch.export fallback):
registered modules become their op, functions and tensor methods map through the tables of
:mod:`symlab.frontend.functions`, rearrangements that keep units whole move the feature axis
(:mod:`symlab.frontend.axes`), hand-written attention becomes one node
(:mod:`symlab.frontend.patterns.attention`), and ops symlab does not model unit by unit are opaque.
Tensors no parameter reaches (ids, masks, positions: :mod:`symlab.frontend.units`) are fixed
``input`` nodes, whatever op made them.
Anything else is refused with :class:`UnsupportedOpError` naming the node, the op, the source
line and how to register a rule.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from symlab.errors import UnsupportedOpError
from symlab.frontend.axes import RELAYOUT_FUNCS, IndexTensor, moved_feature_axis
from symlab.frontend.exact import refuse_hooks
from symlab.frontend.functional_layers import (
    CHANNEL_FIRST,
    LAYER_FUNCS,
    call_args,
    pool_keeps_shift,
    read_layer_call,
    reshaped_parameters,
)
from symlab.frontend.functions import (
    ACT_FUNCS,
    ADD_FUNCS,
    FLATTEN_FUNCS,
    IDENTITY_FUNCS,
    MEAN_FUNCS,
    MUL_FUNCS,
    OPAQUE_FUNCS,
    POOL_FUNCS,
    SOFTMAX_FUNCS,
    SUM_FUNCS,
    USER_FUNCS,
)
from symlab.frontend.fxutil import flat_nodes, unsupported, where
from symlab.frontend.library_calls import library_reader
from symlab.frontend.macros import MACROS
from symlab.frontend.modules import module_op_for
from symlab.frontend.operands import cat_parts, constant_inputs, read_special_binary
from symlab.frontend.patterns import patterns
from symlab.frontend.readers import CALL_READERS
from symlab.frontend.units import unit_carrying
from symlab.graph.archgraph import ArchGraph, Node, ParamSpec

__all__ = ["Converter"]


def _in_place_on_fixed(node: fx.Node, gm: fx.GraphModule) -> bool:
    """An in-place op (``masked_fill_``, ``copy_``, ``index_put_``, …) on tensors no parameter
    reaches (masks, ids, buffers built at run time): fixed data, so the write moves no unit.
    One on a tensor with units is refused (its readers would see the write)."""
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if not (name.endswith("_") and not name.startswith("_")):
        return False
    from symlab.frontend.patterns.attention_forms import fixed

    return fixed((node.args, node.kwargs), gm)


def _pools_other_axes(fn: Any, fa: int, nd: int) -> bool:
    """Whether pooling function ``fn`` (``avg_pool2d``: the last 2 axes; ``interpolate``: every
    axis after the channels) leaves axis ``fa`` of an ``nd``-dim tensor alone."""
    name = getattr(fn, "__name__", "")
    k = next((int(d) for d in "123" if name.endswith(f"{d}d")), None)
    return fa == 1 if k is None else fa < nd - k


class Converter:
    """Reads a torch.fx graph module with shapes into an :class:`ArchGraph`, node by node
    (registered patterns first, each match one node).

    >>> import torch
    >>> from symlab.frontend.shapes import graph_module, record_shapes
    >>> from symlab.frontend.tracer import Tracer
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> gm = graph_module(net, Tracer().trace(net))
    >>> _ = record_shapes(gm, (torch.randn(2, 3),))
    >>> [n.op for n in Converter(net, gm).run().nodes()]
    ['input', 'linear', 'activation', 'output']
    """

    def __init__(self, model: nn.Module, gm: fx.GraphModule, strip: str | None = None) -> None:
        self.model, self.gm, self.strip = model, gm, strip
        self.g = ArchGraph()
        self.name: dict[fx.Node, str] = {}  # fx node -> graph node holding its tensor
        self.fa: dict[str, int] = {}  # graph node -> feature axis
        self.shape: dict[str, tuple[int, ...]] = {}
        self.tuples: dict[fx.Node, Callable[[int, fx.Node], str]] = {}
        self.used_modules: set[str] = set()
        self.first_call: dict[str, fx.Node] = {}
        self.carrying: set[fx.Node] = set()  # the nodes a parameter reaches (set by run)
        self.swallowed: set[fx.Node] = set()  # the nodes patterns read (set by run)
        self.calls: dict[str, int] = {}  # calls of each parameter-free module so far
        self.state = model.state_dict(keep_vars=True)  # the tensors themselves: ties show

    # -- helpers ------------------------------------------------------------------------------
    def meta_shape(self, node: fx.Node) -> tuple[int, ...] | None:
        tm = node.meta.get("tensor_meta")
        return tuple(tm.shape) if hasattr(tm, "shape") else None

    def tensor_args(self, node: fx.Node) -> list[str]:
        out: list[str] = []
        for n in flat_nodes((node.args, node.kwargs)):
            if n in self.name and self.name[n] not in out:
                out.append(self.name[n])
        return out

    def add_node(self, name: str, op: str, inputs: list[str], shape: tuple[int, ...], fa: int,
                 params: list[ParamSpec] | None = None, **attrs: Any) -> str:  # fmt: skip
        fa = fa % max(len(shape), 1)
        width = int(shape[fa]) if shape else 1
        self.g.add(name, op, inputs, width=width, params=params, **attrs)
        self.fa[name], self.shape[name] = fa, shape
        return name

    def emit(self, node: fx.Node, name: str, op: str, inputs: list[str], fa: int | None = None,
             params: list[ParamSpec] | None = None, **attrs: Any) -> str:  # fmt: skip
        shape = self.meta_shape(node)
        if shape is None:
            shape = self.shape[inputs[0]] if inputs else (1,)
        if fa is None:
            fa = self.default_axis(shape, inputs)
        self.add_node(name, op, inputs, shape, fa, params, **attrs)
        self.name[node] = name
        return name

    def default_axis(self, shape: tuple[int, ...], inputs: list[str]) -> int:
        """The units' axis of a result that says nothing of its own: its first input's when
        the ranks agree, else the last."""
        same_rank = bool(inputs) and len(shape) == len(self.shape[inputs[0]])
        return self.fa[inputs[0]] if same_rank else len(shape) - 1

    def on_axis(self, node: fx.Node, x: str, axis: int) -> str:
        """``x`` when its units lie on ``axis``, else ``x`` fixed (an opaque node with its
        feature axis on ``axis``) for a layer ``node`` that mixes ``axis``: the units of ``x``
        then move with nothing (sound), and the layer's own units are derived as usual."""
        axis %= max(len(self.shape[x]), 1)
        if self.fa[x] == axis:
            return x
        name = f"@{node.name}.fixed_input"
        if name not in self.g.nx:
            self.add_node(name, "opaque", [x], self.shape[x], axis)
        return name

    def opaque(self, node: fx.Node) -> str:
        """A node whose inputs and output are fixed; parameters it reads directly become
        inputs too, so that they are fixed with it (never moved behind its back)."""
        for a in flat_nodes((node.args, node.kwargs)):
            if a.op == "get_attr" and a in self.tuples and a not in self.name:
                self.tuples[a](1, node)
        ins = self.tensor_args(node)
        return self.emit(node, f"@{node.name}", "opaque" if ins else "input", ins)

    # -- conversion ---------------------------------------------------------------------------
    def fixed(self, node: fx.Node) -> None:
        """A tensor no parameter reaches: fixed data, an ``input`` node (dropped if unread)."""
        shape = self.meta_shape(node)
        if shape is not None and 0 in shape:  # empty: opaque on what it reads (none dangles)
            ins = self.tensor_args(node)
            fa = self.default_axis(shape, ins)
            if not 0 <= fa < len(shape) or shape[fa] == 0:
                shape, fa = (1,), 0  # no unit left (q[..., d:] at d)
            # (else no row left, h[mask] of a mask with no True: the units keep their width)
            self.add_node(f"@{node.name}", "opaque" if ins else "input", ins, shape, fa)
            self.name[node] = f"@{node.name}"
        elif shape is not None:
            self.emit(node, f"@{node.name}", "input", [], self.input_axis(node, len(shape)))

    def run(self) -> ArchGraph:
        refuse_hooks(self.model)  # torch.fx did not run them: their effect is not in the graph
        outs = 0
        matched, swallowed = self.find_patterns()
        swallowed |= reshaped_parameters(self)  # conv1d.weight.squeeze(1).unsqueeze(1)
        self.swallowed = swallowed
        carrying = self.carrying = unit_carrying(self.gm, self.state)
        for node in self.gm.graph.nodes:
            if node in swallowed:
                continue
            if node in matched:
                pattern, match = matched[node]
                pattern.emit(self, match)
            elif node.op in ("call_module", "call_function", "call_method") and (
                node not in carrying
                or (node.op != "call_module" and 0 in (self.meta_shape(node) or (1,)))
            ):
                self.fixed(node)  # (an empty tensor carries no unit either: q[..., d:] at d)
            elif node.op == "placeholder":
                shape = self.meta_shape(node)
                if shape is not None and node.users:
                    fa = self.input_axis(node, len(shape))
                    name = node.name if "input" in self.g.nx else "input"
                    self.emit(node, name, "input", [], fa)
            elif node.op == "output":
                for n in flat_nodes(node.args):
                    if n in self.name:
                        self.g.add("output" if outs == 0 else f"output.{outs}", "output",
                                   [self.name[n]])  # fmt: skip
                        outs += 1
            elif node.op == "call_module":
                self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                self.call_function(node)
            elif node.op == "get_attr":
                self.tuples[node] = self.param_source(node)
        self.check_tracked()
        self.check_static_units()
        for n in list(self.g.input_nodes):  # inputs read only by fixed data: unused
            if not self.g.consumers(n.name):
                self.g.nx.remove_node(n.name)
                self.g.touch()
        self.g.validate()
        if self.strip is None:
            used = self.g.state_keys()
            self.g.unused_keys = tuple(k for k in self.state if k not in used)
            # keys no node reads are tied too (T5's shared.weight): the action copies to them
            self.g.tied_keys = tuple(k for k in self.aliases() if any(x in used for x in k))
        return self.g

    def check_static_units(self) -> None:
        """Fail closed on sizes the example input does not fix (rows picked by a mask, read
        through torch.export: ``meta["symbolic_dims"]``): no tensor a symmetry may move has
        its units on such an axis, whose width is the example's alone (fixed data and opaque
        results, which nothing moves, may)."""
        for n, name in self.name.items():
            dims = n.meta.get("symbolic_dims", ())
            if not dims or name not in self.g.nx or self.fa.get(name) not in dims:
                continue
            if self.g.node(name).op not in ("input", "opaque"):
                raise UnsupportedOpError(
                    f"node {n.name!r} has its units on an axis whose size depends on the values "
                    f"of the input (a boolean mask or torch.nonzero picked them){where(n)}: "
                    "their number is the example's alone, so symlab cannot derive symmetries "
                    "of them; pick rows, not features, with such masks"
                )

    def aliases(self) -> list[tuple[str, ...]]:
        """The groups of ``state_dict`` keys that are one tensor (tied weights)."""
        by_tensor: dict[int, list[str]] = {}
        for key, value in self.state.items():
            by_tensor.setdefault(id(value), []).append(key)
        return [tuple(k) for k in by_tensor.values() if len(k) > 1]

    def check_tracked(self) -> None:
        """Fail closed: every tensor the graph's nodes read is a graph node, or a parameter
        that the reading node declares itself (a functional layer on its module's weight) or
        that no node moves (a 0-dim scale). A tensor read behind the graph's back could be
        moved by the group while the op that read it never learns of it."""
        declared = {k for g_node in self.g.nodes() for k in _moved_keys(g_node)}
        tied_to: dict[str, list[str]] = {}
        for group in self.aliases():  # one tensor: moved under one key is moved under all
            if declared.intersection(group):
                declared.update(group)
                tied_to.update({k: [x for x in group if x != k] for k in group})
        for n in self.gm.graph.nodes:
            if (
                n in self.name
                or n in self.swallowed
                or not hasattr(n.meta.get("tensor_meta"), "shape")
            ):
                continue
            readers = {self.name[u] for u in n.users if u in self.name}
            if not readers:
                continue
            if n.op == "get_attr":
                key = str(n.target)
                # a tensor moved at all must be moved by every reader
                if key not in declared or all(key in _moved_keys(self.g.node(r)) for r in readers):
                    continue
            alias = tied_to.get(str(n.target))
            raise UnsupportedOpError(
                f"node {n.name!r} ({n.op} {getattr(n.target, '__name__', n.target)}) is read by "
                f"{sorted(readers)} but symlab does not track it{where(n)}"
                f"{f', and it is one tensor with {alias}, which symlab moves' if alias else ''}; "
                "symlab refuses rather than move a tensor an op reads behind its back"
            )

    def find_patterns(self) -> tuple[dict[fx.Node, tuple[Any, Any]], set[fx.Node]]:
        """Every registered pattern's matches (keyed by the node each is emitted at) and the
        nodes they swallow; two patterns claiming one node is refused."""
        matched: dict[fx.Node, tuple[Any, Any]] = {}
        swallowed: set[fx.Node] = set()
        for pattern in sorted(patterns(), key=lambda p: p.yields):  # yielding ones last
            found, gone = pattern.find(self.gm)
            claimed = set(matched) | swallowed
            if pattern.yields:  # give way to the patterns before it
                found = {n: m for n, m in found.items() if not ({n, *m.nodes} & claimed)}
                gone = {k for m in found.values() for k in m.nodes}
            if claimed & (set(found) | gone):
                raise UnsupportedOpError(
                    f"pattern {pattern.name!r} claims nodes another pattern matched: "
                    f"{sorted(n.name for n in claimed & (set(found) | gone))}"
                )
            matched.update((node, (pattern, m)) for node, m in found.items())
            swallowed |= gone
        return matched, swallowed

    def input_axis(self, node: fx.Node, ndim: int) -> int:
        """The feature axis of a network input, judged from the first layer that reads it."""
        channel_first = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
        seen, todo = set(), list(node.users)
        while todo:
            user = todo.pop(0)
            if user in seen:
                continue
            seen.add(user)
            if user.op == "call_function" and user.target in CHANNEL_FIRST:
                return 1
            if user.op == "call_module":
                mod = self.gm.get_submodule(str(user.target))
                if isinstance(mod, channel_first):
                    return 1
                if isinstance(mod, nn.Linear | nn.LayerNorm | nn.Embedding) or type(mod) in MACROS:
                    return ndim - 1
            todo.extend(user.users)
        return 1 if ndim >= 3 else ndim - 1

    def param_source(self, node: fx.Node) -> Callable[[int, fx.Node], str]:
        def make(align_fa_from_right: int, consumer: fx.Node) -> str:
            key = str(node.target)
            value = self.gm.get_parameter(key) if isinstance(self.state.get(key), nn.Parameter) \
                else self.gm.get_buffer(key)  # fmt: skip
            shape = tuple(value.shape)
            fa = len(shape) - align_fa_from_right
            name = f"@{node.name}"
            if name in self.g.nx:
                return name
            if key not in self.state or not 0 <= fa < len(shape):
                # a non-persistent buffer, or a tensor broadcast over the other operand's units
                # (a 0-dim parameter): a constant, never moved
                fa = fa if 0 <= fa < len(shape) else max(len(shape) - 1, 0)
                self.g.add(name, "input", [], width=int(shape[fa]) if shape else 1)
                self.fa[name], self.shape[name] = fa, shape
                self.name[node] = name
                return name
            axes = tuple("out" if i == fa else "none" for i in range(len(shape)))
            kind = "param" if isinstance(value, nn.Parameter) else "buffer"
            spec = ParamSpec(key, shape, axes, kind)  # type: ignore[arg-type]
            self.g.add(name, "param_source", [], width=int(shape[fa]), params=[spec],
                       absolute_keys=True, feature_axis=fa)  # fmt: skip
            self.fa[name], self.shape[name] = fa, shape
            self.name[node] = name
            return name

        return make

    def call_module(self, node: fx.Node) -> None:
        mod = self.gm.get_submodule(str(node.target))
        target = str(node.target)
        if self.strip is not None:
            target = target.removeprefix(self.strip).removeprefix(".")
        first = self.first_call.setdefault(target, node)
        if first is not node and first.args == node.args and first.kwargs == node.kwargs:
            for table in (self.name, self.tuples):  # the same call again: the same tensor
                if first in table:
                    table[node] = table[first]  # type: ignore[index]
            return
        stateless = (
            next(iter(mod.parameters()), None) is None and next(iter(mod.buffers()), None) is None
        )
        shared: dict[str, str] = {}  # a module with parameters called again: the same keys
        if target in self.used_modules:  # e.g. one nn.ReLU used twice: two ops
            if not stateless:
                if type(mod) in MACROS or target == "":
                    raise UnsupportedOpError(
                        f"module {target!r} is called more than once on different inputs "
                        f"(weight sharing){where(node)}; symlab ties shared layers but not "
                        f"{type(mod).__name__}: give each call its own module"
                    )
                shared = {"key_prefix": target}
            self.calls[target] = self.calls.get(target, 0) + 1
            target = f"{target}@{self.calls[target]}"
        self.used_modules.add(target)
        constant_inputs(self, node)  # self.emb(self.positions): a fixed input
        ins = self.tensor_args(node)
        if not ins:
            raise unsupported(node, f"module {target!r} called on no tensor")
        if type(mod) in MACROS:
            MACROS[type(mod)](self, node, target, mod, ins)
            return
        entry = module_op_for(mod)
        if entry is None:
            raise unsupported(node, f"module {target!r} of type {type(mod).__name__}")
        x = ins[0]
        op, _, attrs = entry.read(mod, self.g.node(x).width)
        attrs = {**attrs, **shared}
        if op == "flatten":
            self.flatten(node, x, target)
            return
        if op == "softmax":
            self.softmax(node, x, attrs["dim"], target)
            return
        last = len(self.shape[x]) - 1
        need = {"linear": last, "wasym_linear": last, "layernorm": last, "figlu": last,
                "rmsnorm": last,
                "conv": 1, "dwconv": 1, "grouped_conv": 1, "batchnorm": 1, "groupnorm": 1,
                "wasym_conv": 1, "figlu2d": 1,
                "pool_max": 1, "pool_avg": 1}.get(op)  # fmt: skip
        if op != "embedding" and need is not None:
            x = self.on_axis(node, x, need)
            ins = [x, *ins[1:]]
        if op in ("layernorm", "rmsnorm") and len(getattr(mod, "normalized_shape", (0,))) != 1:
            raise unsupported(node, f"{type(mod).__name__} over several axes")
        shape = self.meta_shape(node) or ()
        fa = {"linear": -1, "wasym_linear": -1, "embedding": -1}.get(op)
        if fa is None:
            fa = self.fa[x] if len(shape) == len(self.shape[x]) else min(1, len(shape) - 1)
        if target:
            self.emit(node, target, op, ins, fa, **attrs)
        else:  # the root module itself is the op: its parameter names are the whole keys
            self.emit(node, "@root", op, ins, fa, absolute_keys=True, **attrs)

    def flatten(self, node: fx.Node, x: str, name: str) -> str:
        shape_in, shape_out = self.shape[x], self.meta_shape(node)
        if shape_out is None or len(shape_out) != 2 or shape_out[0] != shape_in[0]:
            return self.opaque(node)
        if len(shape_in) == 2:
            return self.emit(node, name, "flatten", [x], 1)
        if self.fa[x] != 1:
            return self.opaque(node)
        repeat = math.prod(shape_in[2:])
        return self.emit(node, name, "flatten", [x], 1, repeat=repeat)

    def aligned_axis(self, node: fx.Node, ins: list[str]) -> int | None:
        """The result's feature axis when every input has its units on the same axis counted
        from the right, with the same width (broadcasting only over other axes: a
        squeeze-excitation gate of shape (B, C, 1, 1), a layer-scale vector); else None."""
        shape = self.meta_shape(node)
        if any(not 0 <= self.fa[i] < len(self.shape[i]) for i in ins):
            return None  # a 0-dim operand (a mean of everything): no feature axis to align
        from_right = {len(self.shape[i]) - self.fa[i] for i in ins}
        widths = {self.shape[i][self.fa[i]] for i in ins}
        if shape is None or len(from_right) != 1 or len(widths) != 1:
            return None
        fa = len(shape) - from_right.pop()
        return fa if 0 <= fa < len(shape) and shape[fa] == widths.pop() else None

    def relayout(self, node: fx.Node, x: str) -> bool:
        """Transposes, (un)squeezes, expands, reshapes and indexing that keep every unit whole:
        the same units on another axis (a ``relayout`` node). False when they do not."""
        shape = self.meta_shape(node)
        src = node.args[0]
        if shape is None or not isinstance(src, fx.Node) or self.name.get(src) != x:
            return False
        args = (*node.args[1:], *node.kwargs.values())
        if node.target is operator.getitem and len(args) == 1:
            index = self.index_tensors(args[0])
            if index is None:
                return False
            args = (index,)
        fa = moved_feature_axis(node.target, args, self.fa[x], self.shape[x], shape)
        if fa is None:
            return False
        self.emit(node, f"@{node.name}", "relayout", [x], fa)
        return True

    def index_tensors(self, index: Any) -> Any:
        """The index of ``x[index]`` with its tensor items described
        (:class:`~symlab.frontend.axes.IndexTensor`); None where one is reached by a
        parameter: its values move with the group, and so would the rows it picks."""
        items = index if isinstance(index, tuple) else (index,)
        out = []
        for i in items:
            if isinstance(i, fx.Node):
                tm = i.meta.get("tensor_meta")
                if i in self.carrying or not hasattr(tm, "shape"):
                    return None
                i = IndexTensor(len(tm.shape), tm.dtype == torch.bool)
            out.append(i)
        return tuple(out) if isinstance(index, tuple) else out[0]

    def softmax(self, node: fx.Node, x: str, dim: Any, name: str) -> str:
        """A softmax over the units of ``x`` (the shift of its logits is a symmetry); over any
        other axis it is opaque."""
        nd = len(self.shape[x])
        if not isinstance(dim, int) or dim % nd != self.fa[x]:
            return self.emit(node, name, "opaque", [x])
        return self.emit(node, name, "softmax", [x], dim=dim)

    def call_function(self, node: fx.Node) -> None:
        fn = node.target
        if "tensor_meta" not in node.meta:
            return  # not a tensor (a size, a shape tuple, …): no node
        if fn == "size":
            return
        if fn is getattr:  # a tensor attribute (x.T, x.mT, w.data): not modelled, fixed
            self.opaque(node)
            return
        if fn in LAYER_FUNCS and read_layer_call(self, node):  # a layer on its module's own
            return  # parameters (the forward of a subclass, traced into)
        if read_special_binary(self, node):  # x * x, x * self.alpha (0-dim), ...
            return
        if fn not in USER_FUNCS and fn in CALL_READERS and CALL_READERS[fn](self, node):
            return  # read with its arguments (symlab.frontend.readers)
        library = library_reader(fn) if fn not in USER_FUNCS else None
        if library is not None and library(self, node):
            return  # a library's function kept whole by torch.fx (symlab.frontend.library_calls)
        ins = self.tensor_args(node)
        # parameters used as tensors (x + self.pos): materialise them aligned with the other operand
        for a in node.args:
            if fn is operator.getitem and a is not node.args[0]:
                continue  # an index (ids in a buffer): fixed data, read by relayout or opaque
            if isinstance(a, fx.Node) and a in self.tuples and a not in self.name and ins:
                other = ins[0]
                self.tuples[a](len(self.shape[other]) - self.fa[other], node)
            elif a is node.args[0] and a in self.tuples and a.op == "get_attr" and not ins \
                    and fn in RELAYOUT_FUNCS:  # fmt: skip
                self.tuples[a](1, node)  # a parameter rearranged alone (cls token): units last
        src = node.args[0] if node.args else None
        if fn is operator.getitem and isinstance(src, fx.Node) and src in self.tuples and \
                src.op != "get_attr" and isinstance(node.args[1], int):  # fmt: skip
            self.name[node] = self.tuples[src](node.args[1], node)  # an item of a tuple output
            return
        ins = self.tensor_args(node)
        if not ins:
            self.opaque(node)
            return
        x = ins[0]
        if fn in USER_FUNCS:
            op, extra = USER_FUNCS[fn]
            self.emit(node, f"@{node.name}", op, ins, **extra)
        elif fn in ACT_FUNCS:
            attrs: dict[str, Any] = {"fn": ACT_FUNCS[fn]}
            if attrs["fn"] == "leaky_relu":
                slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope")
                attrs["negative_slope"] = 0.01 if slope is None else float(slope)
            if attrs["fn"] == "hardtanh":  # its range decides whether it is odd
                rng = call_args(node, ("input", "min_val", "max_val"))
                lo, hi = rng["min_val"], rng["max_val"]
                if isinstance(lo or -1.0, float | int) and isinstance(hi or 1.0, float | int):
                    attrs.update(min_val=float(-1.0 if lo is None else lo),
                                 max_val=float(1.0 if hi is None else hi))  # fmt: skip
            self.emit(node, f"@{node.name}", "activation", [x], **attrs)
        elif fn in IDENTITY_FUNCS:
            self.emit(node, f"@{node.name}", "activation", [x], fn="identity")
        elif fn in ADD_FUNCS:
            self.add(node, ins)
        elif fn in MUL_FUNCS:
            op = "scale" if len(ins) == 1 and len(node.args) == 2 else "opaque"
            divide = fn in (operator.truediv, torch.div, "div")
            fa = self.aligned_axis(node, ins) if len(ins) == 2 and not divide else None
            if fa is not None:  # gated units (SwiGLU, squeeze-excitation, layer scale): u ⊙ v
                self.emit(node, f"@{node.name}", "product", ins, fa)
            else:
                self.emit(node, f"@{node.name}", op, ins)
        elif fn in SOFTMAX_FUNCS:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            self.softmax(node, x, dim, f"@{node.name}")
        elif fn in RELAYOUT_FUNCS and self.relayout(node, x):
            pass
        elif fn in FLATTEN_FUNCS:
            self.flatten(node, x, f"@{node.name}")
        elif fn in POOL_FUNCS or fn in MEAN_FUNCS or (fn in SUM_FUNCS and _dims(node) is not None):
            self.pool(node, x, POOL_FUNCS.get(fn, "pool_avg"))
        elif fn is torch.stack and self.stack(node):
            pass
        elif fn in (torch.cat, torch.concat):
            self.cat(node, ins)
        elif fn in OPAQUE_FUNCS or fn == "size" or _in_place_on_fixed(node, self.gm):
            self.opaque(node)  # (in place on masks or ids: fixed data)
        else:
            what = getattr(fn, "__name__", str(fn))
            raise unsupported(node, f"function {what!r}")

    def add(self, node: fx.Node, ins: list[str]) -> None:
        if len(ins) == 1:
            other = [a for a in node.args if not isinstance(a, fx.Node)]
            op = "shift_const" if other and isinstance(other[0], int | float) else "opaque"
            self.emit(node, f"@{node.name}", op, ins)
            return
        fa = self.aligned_axis(node, ins)
        if fa is None:
            self.opaque(node)  # broadcasting across feature axes: not modelled
            return
        self.emit(node, f"@{node.name}", "add", ins, fa)

    def pool(self, node: fx.Node, x: str, op: str) -> None:
        shape = self.meta_shape(node)
        if shape is None:
            self.opaque(node)
            return
        dims = _dims(node)
        fa = self.fa[x]
        if node.target in POOL_FUNCS and not _pools_other_axes(node.target, fa, len(self.shape[x])):
            self.opaque(node)  # the window runs over the units themselves: it mixes them
            return
        if dims is not None and (node.target in MEAN_FUNCS or node.target in SUM_FUNCS):
            nd = len(self.shape[x])
            dims = [d % nd for d in (dims if isinstance(dims, list | tuple) else [dims])]
            if fa in dims:
                self.opaque(node)  # a mean over the units themselves
                return
            if len(shape) < nd:  # keepdim=False: the feature axis moves left
                fa -= sum(d < fa for d in dims)
        # a sum maps x + c to sum(x) + n c: the shift does not pass unchanged
        keeps = pool_keeps_shift(node) and node.target not in SUM_FUNCS
        self.emit(node, f"@{node.name}", op, [x], fa, keeps_shift=keeps)

    def stack(self, node: fx.Node) -> bool:
        """``torch.stack(ts, dim)`` of tensors whose units lie on one axis, with one width: a
        ``join`` along the new axis (every part moves like the result). False (then opaque)
        for anything else, a parameter among the parts included."""
        seq = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = self.meta_shape(node)
        if not isinstance(seq, list | tuple) or not seq or not isinstance(dim, int) or not shape:
            return False
        if any(not isinstance(t, fx.Node) or t not in self.name for t in seq):
            return False
        parts = [self.name[t] for t in seq]
        fa, each = self.fa[parts[0]], self.shape[parts[0]]
        if any(self.fa[p] != fa or self.shape[p] != each for p in parts):
            return False
        fa_out = fa + (dim % (len(each) + 1) <= fa)
        if shape[fa_out] != each[fa]:
            return False
        self.emit(node, f"@{node.name}", "join", list(dict.fromkeys(parts)), fa_out)
        return True

    def cat(self, node: fx.Node, ins: list[str]) -> None:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        nd = len(self.shape[ins[0]])
        if any(self.fa[i] != self.fa[ins[0]] for i in ins):
            self.opaque(node)
        elif dim % nd == self.fa[ins[0]]:
            self.emit(node, f"@{node.name}", "concat", cat_parts(self, node, ins))
        else:
            self.emit(node, f"@{node.name}", "join", ins)


def _dims(node: fx.Node) -> Any:
    """The ``dim`` argument of a reduction call (None: every axis)."""
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")


def _moved_keys(node: Node) -> set[str]:
    """The ``state_dict`` keys a graph node declares as moved (not as fixed data)."""
    return {node.key(p) for p in node.params if p.kind != "fixed"}
