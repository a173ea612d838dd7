"""Architecture graphs: the IR (:class:`ArchGraph`) and builders with symbolic widths.

The IR knows nothing above it: torch modules are read into graphs by :mod:`symlab.frontend`
(``sl.trace``) and built from graphs by :mod:`symlab.nn` (``graph.build()``).
"""

from symlab.graph.archgraph import ArchGraph, Node, ParamSpec
from symlab.graph.builders import mlp
from symlab.graph.widths import Width

__all__ = ["ArchGraph", "Node", "ParamSpec", "Width", "mlp"]
