"""The general front-end: trace any ``nn.Module`` with torch.fx into an ArchGraph.

Registered modules (Linear, Conv, norms, activations, pooling, Embedding, W-asymmetric layers,
FiGLU, …) are leaves; ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` are expanded
into graph nodes (see :mod:`symlab.frontend.macros`); functions and tensor methods (``F.relu``,
``torch.tanh``, ``x + y``, ``flatten``/``view`` after convolutions, ``torch.cat``, means and
pools) map to ops. Shapes come from running the example input (:mod:`symlab.frontend.shapes`), so
every node knows its feature axis: the channel axis after convolutions, the last axis after
linear maps.
Multi-head attention written by hand (Linear projections, reshapes into heads, softmax,
matmul or ``F.scaled_dot_product_attention``, output Linear) is recognised as one
``attention_linear`` node (see :mod:`symlab.frontend.patterns.attention`). Other ops symlab does not
model unit by unit (softmax, matmul, reshapes into heads, …) become *opaque* nodes whose
inputs and outputs are fixed (sound: nothing is derived through them).
Anything else is refused with :class:`UnsupportedOpError` naming the node, the op, the source
line and how to register a rule. When torch.fx cannot trace the model (Python code on sizes),
the graph comes from torch.export instead (:mod:`symlab.frontend.export`).
"""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from symlab.errors import TraceError, UnsupportedOpError
from symlab.frontend.convert import Converter
from symlab.frontend.shapes import graph_module, record_shapes
from symlab.frontend.tracer import Tracer, is_leaf
from symlab.graph.archgraph import ArchGraph

__all__ = ["trace_fx"]


def trace_fx(model: nn.Module, example_input: Any) -> ArchGraph:
    """Trace ``model`` on ``example_input`` (a tensor or a tuple of tensors) with torch.fx.

    >>> import torch
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    >>> g = trace_fx(net, torch.randn(2, 1, 6, 6))
    >>> [n.op for n in g.nodes()]
    ['input', 'conv', 'activation', 'flatten', 'linear', 'output']
    """
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    root_is_leaf = is_leaf(model)
    if root_is_leaf:  # fx traces into the root; wrap it so that it stays one op
        if len(inputs) != 1:
            raise TraceError("a bare layer with several inputs: wrap it in a module first")
        model = _Root(model)
    try:
        return _trace_and_convert(model, inputs, root_is_leaf, stack_traces=False)
    except UnsupportedOpError:
        # trace again recording source lines, so that the error can point at the user's code
        return _trace_and_convert(model, inputs, root_is_leaf, stack_traces=True)


def _trace_and_convert(
    model: nn.Module, inputs: tuple[Any, ...], root_is_leaf: bool, stack_traces: bool
) -> ArchGraph:
    tracer = Tracer()
    tracer.record_stack_traces = stack_traces
    frontend = "torch.fx"
    try:
        graph = tracer.trace(model)
    except (fx.proxy.TraceError, TypeError, RuntimeError, NotImplementedError) as e:
        # Python code on sizes stops torch.fx; torch.export runs it (TraceError if it cannot)
        from symlab.frontend.export import export_graph

        graph, frontend = export_graph(model, inputs, fx_error=e), "torch.export"
    graph.owning_module = model
    gm = graph_module(model, graph)  # dead code removed, Python code generated lazily
    try:
        record_shapes(gm, inputs)  # ShapeProp's node.meta["tensor_meta"], faster
    except RuntimeError as e:
        cause = e.__cause__ or e
        raise TraceError(
            f"the example input does not run through {type(model).__name__}: "
            f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}. "
            "Pass an input of the shape and dtype the model expects (e.g. "
            "x.to(next(model.parameters()).dtype))"
        ) from e
    graph_out = Converter(model, gm, strip="root" if root_is_leaf else None).run()
    graph_out.frontend = frontend
    return graph_out


class _Root(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.root = inner

    def forward(self, x: Any) -> Any:
        return self.root(x)
