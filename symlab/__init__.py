"""symlab: a sandbox for the theory of parameter symmetries in neural networks.

>>> import symlab as sl
>>> G = sl.symmetries(sl.graph.mlp([10, 32, 32, 3], activation="relu"))
>>> G.order == sl.sympy.factorial(32) ** 2, G.dimension
(True, 64)
"""

import logging

from symlab import align, connect, data, errors, frontend, graph, identify, io, nn, symmetry, train
from symlab.api import symmetries, trace
from symlab.errors import SymlabError
from symlab.perf import lazy_import
from symlab.symmetry.check import brute_force_group, check_invariance
from symlab.symmetry.group import SymmetryGroup

sympy = lazy_import("sympy")  # loaded on first use: ``import symlab`` stays cheap

__version__ = "0.1.0"

# symlab reports through the "symlab" logger (a fallback to torch.export, derivation
# summaries, training and sweep progress) and says nothing unless the application configures
# logging, e.g. logging.basicConfig(level=logging.INFO).
logging.getLogger("symlab").addHandler(logging.NullHandler())

__all__ = [
    "SymlabError",
    "SymmetryGroup",
    "align",
    "brute_force_group",
    "check_invariance",
    "connect",
    "data",
    "errors",
    "frontend",
    "graph",
    "identify",
    "io",
    "nn",
    "symmetries",
    "symmetry",
    "sympy",
    "trace",
    "train",
]
