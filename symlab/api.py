"""The top-level entry points: ``symmetries`` and ``trace``."""

from __future__ import annotations

import torch
from torch import nn

from symlab.frontend.trace import trace
from symlab.graph.archgraph import ArchGraph
from symlab.perf import LazyStateDict, paused_gc
from symlab.symmetry.group import SymmetryGroup

__all__ = ["symmetries", "trace"]


def symmetries(
    model: nn.Module | ArchGraph, example_input: torch.Tensor | None = None
) -> SymmetryGroup:
    """The symmetry group of ``model`` (a module or an :class:`ArchGraph`), derived from its
    graph with the rules of SCIENCE.md §1 (Godfrey et al. 2022 intertwiner groups; Lim et al.
    2024 for asymmetric units).

    >>> import symlab as sl
    >>> G = sl.symmetries(sl.nn.MLP([4, 8, 8, 2], activation="tanh"))
    >>> G.order == (sl.sympy.factorial(8) * 2**8) ** 2
    True
    """
    with paused_gc():  # many objects made, none freed before the end: see symlab.perf
        graph = trace(model, example_input)
        fixed = LazyStateDict(model) if isinstance(model, nn.Module) else None
        return SymmetryGroup.from_graph(graph, fixed)
