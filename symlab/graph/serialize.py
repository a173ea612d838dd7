"""An :class:`ArchGraph` as plain JSON data and back (no pickle): what a saved symmetry group
stores instead of the model's code (see :mod:`symlab.io`).

Integer widths only: a graph with symbolic widths comes from a builder, which is the cheaper
thing to keep. Node attributes may be ``None``, bools, numbers, strings, and tuples, lists or
string-keyed dicts of these; tuples are tagged so that they come back as tuples.

>>> from symlab.graph import mlp
>>> g = mlp([3, 4, 2], activation="tanh")
>>> graph_from_dict(graph_to_dict(g)) == g
True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from symlab.errors import FileFormatError, WidthError
from symlab.graph.archgraph import ArchGraph, ParamSpec

__all__ = ["graph_digest", "graph_from_dict", "graph_to_dict"]

_TUPLE = "__tuple__"


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        if _TUPLE in value:
            raise FileFormatError(f"{where}: the key {_TUPLE!r} is reserved")
        return {k: _encode(v, where) for k, v in value.items()}
    raise FileFormatError(
        f"{where} is a {type(value).__name__}, which a saved graph cannot hold (only None, "
        "bools, numbers, strings, and tuples, lists or dicts of these)"
    )


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {_TUPLE}:
            return tuple(_decode(v) for v in value[_TUPLE])
        return {k: _decode(v) for k, v in value.items()}
    return value


def graph_to_dict(graph: ArchGraph) -> dict[str, Any]:
    """JSON-ready data of ``graph``: nodes in topological order with their inputs (port
    order), widths, parameter specs and attributes, plus the front-end, unused and tied keys.

    >>> from symlab.graph import mlp
    >>> d = graph_to_dict(mlp([3, 4, 2]))
    >>> [n["name"] for n in d["nodes"]][:2], d["nodes"][1]["width"]
    (['input', 'layers.0.linear'], 4)
    """
    if not graph.is_concrete:
        raise WidthError(
            f"only graphs with integer widths can be saved, this one has symbols "
            f"{sorted(map(str, graph.free_symbols))}; substitute them with graph.subs({{...}}) "
            "(or keep the builder call, which derives the group again at once)"
        )
    nodes = []
    for n in graph.nodes():
        nodes.append(
            {
                "name": n.name,
                "op": n.op,
                "inputs": graph.inputs(n.name),
                "width": int(n.width),
                "params": [
                    [p.name, [int(s) for s in p.shape], list(p.axes), p.kind] for p in n.params
                ],
                "attrs": _encode(dict(n.attrs), f"attribute of node {n.name!r}"),
            }
        )
    return {
        "nodes": nodes,
        "frontend": graph.frontend,
        "unused_keys": list(graph.unused_keys),
        "tied_keys": [list(t) for t in graph.tied_keys],
    }


def graph_from_dict(data: Mapping[str, Any]) -> ArchGraph:
    """The graph :func:`graph_to_dict` described (validated).

    >>> from symlab.graph import mlp
    >>> g = graph_from_dict(graph_to_dict(mlp([3, 4, 2])))
    >>> [n.op for n in g.nodes()][:3]
    ['input', 'linear', 'activation']
    """
    try:
        g = ArchGraph()
        for n in data["nodes"]:
            params = [ParamSpec(name, tuple(shape), tuple(axes), kind)
                      for name, shape, axes, kind in n["params"]]  # fmt: skip
            g.add(n["name"], n["op"], n["inputs"], width=n["width"], params=params,
                  **_decode(n["attrs"]))  # fmt: skip
        g.frontend = str(data["frontend"])
        g.unused_keys = tuple(data["unused_keys"])
        g.tied_keys = tuple(tuple(t) for t in data["tied_keys"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(
            f"the saved graph is malformed ({type(exc).__name__}: {exc})"
        ) from None
    g.validate()
    return g


def graph_digest(graph: ArchGraph) -> str:
    """SHA-256 of the graph's canonical JSON: equal exactly when the graphs are.

    >>> from symlab.graph import mlp
    >>> graph_digest(mlp([3, 4, 2])) == graph_digest(mlp([3, 4, 2])) != graph_digest(mlp([3, 5, 2]))
    True
    """
    text = json.dumps(graph_to_dict(graph), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
