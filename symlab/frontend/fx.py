"""The general front-end: trace any ``nn.Module`` with torch.fx into an ArchGraph.

Registered modules (Linear, Conv, norms, activations, pooling, Embedding, W-asymmetric layers,
FiGLU, …) are leaves; ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` are expanded
into graph nodes (see :mod:`symlab.frontend.macros`); functions and tensor methods (``F.relu``,
``torch.tanh``, ``x + y``, ``flatten``/``view`` after convolutions, ``torch.cat``, means and
pools) map to ops. Shapes come from running the example input on fake tensors
(:mod:`symlab.frontend.shapes`), so every node knows its feature axis: the channel axis after
convolutions, the last axis after linear maps.
Multi-head attention written by hand (Linear projections, reshapes into heads, softmax,
matmul or ``F.scaled_dot_product_attention``, output Linear) is recognised as one
``attention_linear`` node (see :mod:`symlab.frontend.patterns.attention`). Other ops symlab does not
model unit by unit (softmax, matmul, reshapes into heads, …) become *opaque* nodes whose
inputs and outputs are fixed (sound: nothing is derived through them); tensors no parameter
reaches (ids, masks, positions) are fixed whatever op made them (:mod:`symlab.frontend.units`).
Anything else is refused with :class:`UnsupportedOpError` naming the node, the op, the source
line and how to register a rule.

Inputs are positional, keyword (``kwargs=``) or a dict of keyword inputs. Whenever torch.fx
fails on a model (Python code on sizes, ``**kwargs`` forwards, anything else), the graph comes
from torch.export instead (:mod:`symlab.frontend.export`); an exception from either front-end
that is not a :class:`~symlab.errors.SymlabError` becomes a :class:`TraceError` naming the
front-end, the model and the cause.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from symlab.errors import SymlabError, TraceError, UnsupportedOpError
from symlab.frontend.assembled import assemble_fx
from symlab.frontend.convert import Converter
from symlab.frontend.decompose import decompose
from symlab.frontend.fxutil import flat_nodes
from symlab.frontend.in_place import ReadThroughView, resolve_in_place
from symlab.frontend.inputs import ExampleInputs
from symlab.frontend.shapes import graph_module, record_shapes
from symlab.frontend.tracer import Tracer, is_leaf
from symlab.frontend.units import _base, writes
from symlab.graph.archgraph import ArchGraph

__all__ = ["trace_fx"]


def trace_fx(
    model: nn.Module, example_input: Any, kwargs: dict[str, Any] | None = None
) -> ArchGraph:
    """Trace ``model`` on ``example_input`` (a tensor, a tuple of positional arguments or a dict
    of keyword arguments) and ``kwargs`` with torch.fx, else with torch.export.

    >>> import torch
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    >>> g = trace_fx(net, torch.randn(2, 1, 6, 6))
    >>> [n.op for n in g.nodes()]
    ['input', 'conv', 'activation', 'flatten', 'linear', 'output']
    """
    inputs = ExampleInputs.of(example_input, kwargs)
    what = type(model).__name__
    root_is_leaf = is_leaf(model)
    if root_is_leaf:  # fx traces into the root; wrap it so that it stays one op
        if len(inputs.args) != 1 or inputs.kwargs:
            raise TraceError("a bare layer with several inputs: wrap it in a module first")
        model = _Root(model)
    try:
        try:
            return _via_fx(model, inputs, root_is_leaf, stack_traces=False)
        except UnsupportedOpError:
            # trace again recording source lines, so that the error can point at the user's code
            return _via_fx(model, inputs, root_is_leaf, stack_traces=True)
    except SymlabError:
        raise
    except Exception as e:  # anything torch.fx cannot do goes to torch.export
        fx_error = e
    try:
        from symlab.frontend.export import export_graph

        try:
            graph, flat = export_graph(model, inputs, fx_error=fx_error)
            return _convert(model, graph, flat, root_is_leaf, "torch.export")
        except UnsupportedOpError:
            # export again recording source lines, so that the error can point at the user's code
            graph, flat = export_graph(model, inputs, fx_error=fx_error, stack_traces=True)
            return _convert(model, graph, flat, root_is_leaf, "torch.export")
    except SymlabError:
        raise
    except Exception as e:  # a failure of symlab's reader, named as such
        raise TraceError(
            f"symlab's torch.export front-end failed on {what}: {_brief(e)}. (torch.fx failed "
            f"first: {_brief(fx_error)}.) This is a limitation of symlab's reader, not of your "
            "model: describe the failing module as a leaf with a rule (symlab.frontend."
            "declare_leaf, register_module_op and @symlab.symmetry.rule) or the architecture "
            "with an ArchGraph / symlab builders, and please report it"
        ) from e


def _brief(e: BaseException) -> str:
    text = " ".join(str(e).strip().split("\n", 1)[0].split())
    return f"{type(e).__name__}: {text[:300]}"


def _via_fx(
    model: nn.Module, inputs: ExampleInputs, root_is_leaf: bool, stack_traces: bool
) -> ArchGraph:
    tracer = Tracer()
    tracer.record_stack_traces = stack_traces
    concrete, flat = _fx_arguments(model, inputs)
    graph = tracer.trace(model, concrete_args=concrete)
    _check_writes_it_follows(graph, model)
    n_placeholders = sum(n.op == "placeholder" for n in graph.nodes)
    if flat is not None and n_placeholders != len(flat):
        raise TypeError(f"torch.fx made {n_placeholders} inputs of {len(flat)} arguments")
    try:
        return _convert(model, graph, list(inputs.args) if flat is None else flat, root_is_leaf,
                        "torch.fx")  # fmt: skip
    except _ShapeError as e:
        try:  # the model itself runs on the input: torch.fx's graph is what failed
            with torch.no_grad():
                inputs.map(torch.clone).call(model)
        except Exception:  # any failure means the input does not fit
            raise e.trace_error(model) from e.__cause__
        raise e.__cause__ or e  # noqa: B904


def _check_writes_it_follows(graph: fx.Graph, model: nn.Module) -> None:
    """Raise (a plain error: torch.export then reads the model) where the forward writes
    through an ``out=`` argument (``torch.add(a, b, out=buf)``: the graph's readers of ``buf``
    would not see the write), or in place into a tensor torch.fx did not trace. torch.fx runs
    code on tensors made from constants alone (``out = torch.zeros(5, 4)``, its size fixed) as
    it traces, so anything computed from such a tensor after a traced write into it
    (``out.copy_(h)``, then ``relu(out)``) was computed before the write and baked into the
    graph with stale values: that graph is not the model's function. torch.export traces
    every tensor and every write."""
    state = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    state |= {name for name, _ in model.named_buffers(remove_duplicate=False)}
    graph.owning_module = model  # writes() looks modules up there (nn.ReLU(inplace=True))
    for node in graph.nodes:
        if flat_nodes(node.kwargs.get("out")):  # torch.add(a, b, out=buf): buf is written
            raise RuntimeError(
                f"node {node.name!r} writes into its out= argument, which symlab's torch.fx "
                "reader does not follow"
            )
        if not writes(node) or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        base = _base(node.args[0])
        if base.op == "get_attr" and str(base.target) not in state:
            raise RuntimeError(
                f"node {node.name!r} writes in place into a tensor that torch.fx computed while "
                "tracing (made from constants alone), so what the graph reads from it afterwards "
                "holds the values from before the write"
            )


def _fx_arguments(
    model: nn.Module, inputs: ExampleInputs
) -> tuple[dict[str, Any] | None, list[Any] | None]:
    """``(concrete_args, values of the placeholders)`` for torch.fx. Positional tensors alone:
    ``(None, None)`` (fx makes a placeholder per parameter, defaults filling the rest). With
    keyword inputs, every argument that is not a tensor is fixed to its value (``None`` masks
    and flags stay Python values while tracing) and tensors become placeholders."""
    if not inputs.kwargs:
        return None, None
    bound = inputs.bind(model)
    if bound is None:
        raise TypeError(f"{type(model).__name__}.forward does not take these inputs")
    concrete: dict[str, Any] = {}
    flat: list[Any] = []
    for name, p in bound.signature.parameters.items():
        value = bound.arguments.get(name, p.default)
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            if value:
                raise TypeError(f"torch.fx cannot pass inputs through *{name}")
            continue
        if not isinstance(value, torch.Tensor):
            concrete[name] = value
        flat.append(value)
    return concrete, flat


class _ShapeError(Exception):
    """The example input did not run through the traced graph."""

    def trace_error(self, model: nn.Module) -> TraceError:
        cause = self.__cause__.__cause__ or self.__cause__ if self.__cause__ else self
        text = str(cause).splitlines()[0] if str(cause) else ""
        return TraceError(
            f"the example input does not run through {type(model).__name__}: "
            f"{type(cause).__name__}: {text}. Pass an input of the shape and dtype the model "
            "expects (e.g. x.to(next(model.parameters()).dtype))"
        )


def _convert(
    model: nn.Module, graph: fx.Graph, flat: list[Any], root_is_leaf: bool, frontend: str
) -> ArchGraph:
    graph.owning_module = model
    gm = graph_module(model, graph)  # dead code removed, Python code generated lazily
    if decompose(gm.graph):  # torch.addcmul(x, a, b) as x + a * b
        gm.recompile()
    try:
        record_shapes(gm, tuple(flat))  # ShapeProp's node.meta["tensor_meta"], on fake tensors
    except RuntimeError as e:
        if frontend == "torch.fx":
            raise _ShapeError() from e
        raise _ShapeError().trace_error(model) from e
    if assemble_fx(gm.graph):  # a new tensor written part by part: the cat of the parts
        record_shapes(gm, tuple(flat))
    try:
        resolve_in_place(gm.graph)  # readers after an in-place write read its result
    except ReadThroughView as e:
        if frontend == "torch.fx":
            raise  # torch.export reads the model, and writes into slices (scattered.py)
        raise UnsupportedOpError(str(e)) from None
    graph_out = Converter(model, gm, strip="root" if root_is_leaf else None).run()
    graph_out.frontend = frontend
    return graph_out


class _Root(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.root = inner

    def forward(self, x: Any) -> Any:
        return self.root(x)
