"""Where a sigmoid's flip shift goes, and which sign flips survive it.

``σ(−z) = 1 − σ(z)``: flipping unit ``i`` of a sigmoid's input flips its output and shifts it
by ``(1 − s_i)/2``. The shift must be removed further on. It passes unchanged through ops that
move each unit's values without mixing or rescaling them — a relayout (transpose, reshape that
keeps units whole), a flatten (each channel's shift repeated over its positions), an average
pool or mean over positions whose weights sum to one (no zero padding), a max pool, an identity —
and is then absorbed by every reader:

* a biased linear map or an unpadded convolution takes any per-unit shift into its bias
  (``b − Σ W c``), as does BatchNorm (its running mean): per-unit sign flips survive;
* LayerNorm removes only a shift common to all its units, which ``(1 − s)/2`` is when ``s`` is:
  one common sign flip survives (with LayerNorm's ``γ`` negated);
* anything else (an unbiased or padded reader, a residual sum, a concatenation, a network
  output) keeps no flip at all (sound; not every such case is incomplete, but none is guessed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from symlab.graph.archgraph import ArchGraph
from symlab.symmetry.spec import OpSymmetry, Sign

__all__ = ["FlipPaths", "flip_paths"]

_UNIFORM_ABSORBERS = {"layernorm"}


def _transparent(graph: ArchGraph, name: str) -> bool:
    """Whether op ``name`` passes a per-unit shift of its (single) input to its output."""
    node = graph.node(name)
    if len(graph.inputs(name)) != 1:
        return False
    if node.op in ("relayout", "flatten", "pool_max"):
        return True
    if node.op == "pool_avg":
        return bool(node.attrs.get("keeps_shift", False))
    return node.op == "activation" and node.attrs.get("fn") == "identity"


@dataclass
class FlipPaths:
    """``levels[source]``: the sign flips a flip source keeps (``Sign.DIAG``, ``Sign.COMMON``
    or ``Sign.NONE``); ``out_shift[tensor]``: the shift of every tensor carrying one, as a
    function of that tensor's own sign vector (a flatten over positions repeats its input's
    shift instead, see :func:`symlab.symmetry.composite.concat_transform`)."""

    levels: dict[str, Sign] = field(default_factory=dict)
    out_shift: dict[str, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)


def flip_paths(
    graph: ArchGraph, specs: Mapping[str, OpSymmetry], repeat: Mapping[str, int]
) -> FlipPaths:
    """Follow every flip source's shift to the ops that absorb it (see the module docstring).

    >>> import symlab as sl, torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.LayerNorm(4), nn.Linear(4, 2))
    >>> G = sl.symmetries(net)  # one common flip through LayerNorm
    >>> [f.kind for f in G.factors if "sign" in f.kind or f.kind == "flip"][:1]
    ['common_sign']
    """
    out = FlipPaths()
    for src, spec in specs.items():
        fn = spec.out_shift
        if fn is None:
            continue
        level, todo, seen = Sign.DIAG, [src], set()
        out.out_shift[src] = fn
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            consumers = graph.consumers(t)
            if not consumers:
                level = Sign.NONE
            for c in consumers:
                if _transparent(graph, c):
                    if repeat.get(c, 1) == 1:
                        out.out_shift[c] = fn
                    todo.append(c)
                elif specs[c].absorbs_shift:
                    continue
                elif graph.node(c).op in _UNIFORM_ABSORBERS:
                    level = min(level, Sign.COMMON)
                else:
                    level = Sign.NONE
        out.levels[src] = Sign(level)
    return out
