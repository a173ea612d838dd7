"""``trace``: any model to an ArchGraph.

``GraphNet`` models (the MLPs of :mod:`symlab.nn`) carry their graph. An ``nn.Sequential`` given
without an example input is read child by child (node names are the child names, so parameter
names are the ``state_dict`` keys). Everything else goes through the torch.fx front-end
(:func:`symlab.frontend.fx.trace_fx`), which needs an example input (for a model whose first
layer is ``nn.Linear`` one is made up); models torch.fx cannot trace because of Python code on
sizes, ``**kwargs`` forwards or anything else are read through torch.export
(:mod:`symlab.frontend.export`). Inputs may be positional (a tensor, a tuple), keyword
(``kwargs=``) or a dict of keyword inputs (a tokenizer's output).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from symlab.errors import UnsupportedOpError
from symlab.frontend.fx import trace_fx
from symlab.frontend.inputs import ExampleInputs
from symlab.frontend.modules import module_op_for
from symlab.frontend.preserve import preserved_state
from symlab.graph.archgraph import ArchGraph
from symlab.nn.graphnet import GraphNet
from symlab.perf import paused_gc

__all__ = ["trace"]


def trace(
    model: nn.Module | ArchGraph,
    example_input: Any = None,
    *,
    kwargs: dict[str, Any] | None = None,
) -> ArchGraph:
    """The architecture graph of ``model`` called on ``example_input`` (a tensor, a tuple of
    positional arguments or a dict of keyword arguments) and ``kwargs``.

    >>> seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> [n.name for n in trace(seq).nodes()]
    ['input', '0', '1', '2', 'output']
    >>> emb = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    >>> trace(emb, {"input": torch.tensor([[1, 2, 3]])}).frontend
    'torch.fx'
    """
    if isinstance(model, ArchGraph):
        model.validate()
        return model
    if isinstance(model, GraphNet):
        return model.graph
    inputs = ExampleInputs.of(example_input, kwargs)
    if isinstance(model, nn.Sequential) and inputs.empty:
        return _trace_sequential(model, None)
    if inputs.empty:
        first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
        if first is None:
            raise UnsupportedOpError(
                f"tracing a {type(model).__name__} needs an example input: call "
                "symlab.symmetries(model, example_input)"
            )
        inputs = ExampleInputs((torch.zeros(2, first.in_features),))
    with paused_gc(), preserved_state(model):  # gc: see symlab.perf; caches a forward fills
        return trace_fx(model, inputs)  # with proxies or fake tensors are emptied again


def _trace_sequential(model: nn.Sequential, example_input: torch.Tensor | None) -> ArchGraph:
    children = list(model.named_children())
    if not children:
        raise UnsupportedOpError("an empty nn.Sequential has no architecture to trace")
    if example_input is not None:
        width = int(example_input.shape[-1])
    else:
        first = next((m for _, m in children if hasattr(m, "in_features")), None)
        if first is None:
            raise UnsupportedOpError(
                "cannot infer the input width; pass example_input to trace/symmetries"
            )
        width = int(first.in_features)
    g = ArchGraph()
    prev = g.add("input", "input", width=width).name
    for name, child in children:
        entry = module_op_for(child)
        if entry is None:
            raise UnsupportedOpError(
                f"node {name!r}: module type {type(child).__name__} has no registered op; "
                "register one with symlab.frontend.modules.register_module_op and a symmetry rule "
                "with @symlab.symmetry.rule(op)"
            )
        op, out_width, attrs = entry.read(child, g.node(prev).width)
        if op == "softmax" and attrs.get("dim") not in (1, -1):
            op, attrs = "opaque", {}  # read as (batch, features): not over the units
        in_f = getattr(child, "in_features", None)
        if in_f is not None and in_f != g.node(prev).width:
            raise UnsupportedOpError(
                f"node {name!r}: {type(child).__name__} expects {in_f} features but receives "
                f"{g.node(prev).width}"
            )
        prev = g.add(name, op, [prev], width=out_width, **attrs).name
    g.add("output", "output", [prev])
    g.validate()
    g.frontend = "nn.Sequential"
    return g
