"""Architecture graphs: the IR, builders with symbolic widths, and tracing front-ends."""

from symlab.graph.archgraph import ArchGraph, Node, ParamSpec
from symlab.graph.builders import mlp
from symlab.graph.trace import trace
from symlab.graph.widths import Width

__all__ = ["ArchGraph", "Node", "ParamSpec", "Width", "mlp", "trace"]
