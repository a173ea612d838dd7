"""The top-level entry points: ``symmetries`` and ``trace``.

Both check what they are given before tracing (a model, not its name; an example input that
fits it) so that a mistake is a one-line :class:`~symlab.errors.SymlabError`, not a traceback
from deep inside torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from symlab.errors import ExampleInputError, ModelTypeError
from symlab.frontend.trace import trace as _trace
from symlab.graph.archgraph import ArchGraph
from symlab.modes import eval_mode
from symlab.perf import LazyStateDict, paused_gc
from symlab.symmetry.group import SymmetryGroup

__all__ = ["symmetries", "trace"]

log = logging.getLogger(__name__)


def symmetries(
    model: nn.Module | ArchGraph,
    example_input: Any = None,
    *,
    kwargs: dict[str, Any] | None = None,
) -> SymmetryGroup:
    """The symmetry group of ``model`` (a module or an :class:`ArchGraph`), derived from its
    graph with the rules of the intertwiner table (Godfrey et al., "On the Symmetries of Deep
    Learning Models and their Internal Representations", NeurIPS 2022; Lim et al., NeurIPS 2024
    for asymmetric units); see ``docs/concepts/symmetries.md``.

    ``example_input`` is one batch of inputs (a tensor, a tuple of the forward's tensors, or a
    dict of its keyword arguments such as a tokenizer's output); ``kwargs`` adds keyword
    arguments (``sl.symmetries(model, (input_ids,), kwargs={"attention_mask": mask})``).
    Models other than symlab's MLPs and plain ``nn.Sequential`` stacks need one to be traced.

    >>> import symlab as sl
    >>> G = sl.symmetries(sl.nn.MLP([4, 8, 8, 2], activation="tanh"))
    >>> G.order == (sl.sympy.factorial(8) * 2**8) ** 2
    True
    """
    example_input = _check_arguments(model, example_input, "symmetries", kwargs)
    with paused_gc():  # many objects made, none freed before the end: see symlab.perf
        graph = _traced(model, example_input, kwargs)
        fixed = LazyStateDict(model) if isinstance(model, nn.Module) else None
        G = SymmetryGroup.from_graph(graph, fixed)
    log.info(
        "derived the symmetry group of %s: %d factors, log10 order %s, dimension %s",
        type(model).__name__,
        len(G.factors),
        G.log10_order,
        G.dimension,
    )
    return G


def trace(
    model: nn.Module | ArchGraph, example_input: Any = None, *, kwargs: dict[str, Any] | None = None
) -> ArchGraph:
    """The architecture graph of ``model`` (symlab MLPs carry theirs; ``nn.Sequential`` is read
    child by child; everything else is traced with torch.fx, or torch.export when torch.fx
    cannot trace it). Inputs as for :func:`symmetries`.

    >>> seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> [n.name for n in trace(seq).nodes()]
    ['input', '0', '1', '2', 'output']
    """
    example_input = _check_arguments(model, example_input, "trace", kwargs)
    return _traced(model, example_input, kwargs)


def _traced(
    model: nn.Module | ArchGraph, example_input: Any, kwargs: dict[str, Any] | None = None
) -> ArchGraph:
    graph = _trace(model, example_input, kwargs=kwargs)
    if graph.frontend == "torch.export":
        log.info("torch.fx could not trace %s; read it through torch.export", type(model).__name__)
    return graph


def _check_arguments(
    model: Any, example_input: Any, fn: str, kwargs: dict[str, Any] | None = None
) -> Any:
    """Refuse what is not a model or not an input of it; return the example input to trace
    with (one made up from the first ``nn.Linear`` when none was given and it runs)."""
    _check_model(model, fn)
    if isinstance(example_input, Mapping) or kwargs:
        _check_keyword_inputs(example_input, kwargs, fn)
        return example_input
    if example_input is not None:
        _check_input_type(example_input, fn)
    if isinstance(model, ArchGraph):
        return example_input
    from symlab.nn.graphnet import GraphNet  # late: symlab.nn imports the graph package

    if isinstance(model, GraphNet):
        if example_input is not None:
            _check_graphnet_input(model, example_input, fn)
        return example_input
    if example_input is None and not isinstance(model, nn.Sequential):
        return _made_up_input(model, fn)
    return example_input


def _check_model(model: Any, fn: str) -> None:
    if isinstance(model, nn.Module | ArchGraph):
        return
    if isinstance(model, str):
        from symlab.nn import zoo

        if model in zoo.names():
            how = f'sl.{fn}(sl.nn.zoo.get("{model}"), sl.nn.zoo.example_input("{model}"))'
        else:
            how = (
                f"build the model first, e.g. sl.{fn}(sl.nn.zoo.get(name), "
                f"sl.nn.zoo.example_input(name)) with a name from {zoo.names()}"
            )
        raise ModelTypeError(
            f"{fn}() takes a model (an nn.Module or an ArchGraph), got the string {model!r}: {how}"
        )
    if isinstance(model, type) and issubclass(model, nn.Module):
        raise ModelTypeError(
            f"{fn}() takes a model instance, got the class {model.__name__}: build it first, "
            f"e.g. sl.{fn}({model.__name__}(...), example_input)"
        )
    raise ModelTypeError(
        f"{fn}() takes a model (an nn.Module or an ArchGraph), got a {type(model).__name__}"
    )


def _check_input_type(example_input: Any, fn: str) -> None:
    parts = example_input if isinstance(example_input, tuple) else (example_input,)
    if not parts or not all(isinstance(p, torch.Tensor) for p in parts):
        kinds = ", ".join(type(p).__name__ for p in parts) or "nothing"
        raise ExampleInputError(
            f"{fn}(): example_input must be a tensor (one batch of inputs) or a tuple of the "
            f"forward's tensors, got {kinds}; e.g. torch.randn(2, *input_shape)"
        )


_LITERALS = (type(None), bool, int, float, str)


def _check_keyword_inputs(example_input: Any, kwargs: Any, fn: str) -> None:
    """Keyword inputs: tensors or plain Python values (flags, ``None``), in a dict."""
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ExampleInputError(f"{fn}(): kwargs must be a dict, got {type(kwargs).__name__}")
    if isinstance(example_input, Mapping) and kwargs:
        raise ExampleInputError(
            f"{fn}(): give keyword inputs either as a dict or as kwargs=, not both"
        )
    if example_input is not None and not isinstance(example_input, Mapping):
        _check_input_type(example_input, fn)
    given = dict(example_input) if isinstance(example_input, Mapping) else {}
    bad = {k: type(v).__name__ for k, v in {**given, **(kwargs or {})}.items()
           if not isinstance(v, (torch.Tensor, *_LITERALS))}  # fmt: skip
    if bad:
        raise ExampleInputError(
            f"{fn}(): keyword inputs must be tensors or plain Python values, got {bad}"
        )


def _check_graphnet_input(model: nn.Module, example_input: Any, fn: str) -> None:
    """A symlab MLP carries its graph and would ignore the input: check that it fits."""
    parts = example_input if isinstance(example_input, tuple) else (example_input,)
    nodes = model.graph.input_nodes
    name = type(model).__name__
    if len(parts) != len(nodes):
        raise ExampleInputError(
            f"{fn}(): example_input has {len(parts)} tensor(s) but {name} takes "
            f"{len(nodes)} input(s) ({[n.name for n in nodes]})"
        )
    for x, node in zip(parts, nodes, strict=True):
        width = int(node.width)
        if x.ndim != 2 or x.shape[-1] != width or not x.is_floating_point():
            raise ExampleInputError(
                f"{fn}(): example_input has shape {tuple(x.shape)} and dtype {x.dtype}, but "
                f"{name}'s input {node.name!r} takes {width} features: pass a float tensor of "
                f"shape (batch, {width}), or no example input at all (an MLP carries its graph)"
            )


def _made_up_input(model: nn.Module, fn: str) -> torch.Tensor | None:
    """``zeros(2, in_features)`` of the first ``nn.Linear``, if the model runs on it; None
    when there is no Linear (tracing then says that it needs an example input)."""
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)), None)
    if found is None:
        return None
    name, first = found
    x = torch.zeros(2, first.in_features, dtype=first.weight.dtype, device=first.weight.device)
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    except Exception as exc:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExampleInputError(
            f"{fn}({type(model).__name__}) needs an example input: none was given, and an "
            f"input made up from its first nn.Linear ({name!r}, {first.in_features} features) "
            f"does not run through it ({type(exc).__name__}: {cause}). Pass one batch of real "
            f"inputs, e.g. sl.{fn}(model, torch.randn(2, *input_shape))"
        ) from None
    return x
