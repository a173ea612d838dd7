"""Weight sharing: one ``state_dict`` key read by several graph nodes.

A module called more than once (ALBERT's shared layers, one ``nn.Linear`` applied to two
inputs) becomes one graph node per call, all declaring the same parameter keys
(``attrs['key_prefix']``). The parameter is one tensor, so every symmetry must move it the same
way in every call: for ``y₁ = W x₁`` and ``y₂ = W x₂``, ``W ↦ B W A⁻¹`` is a symmetry of both
calls only when ``x₁`` and ``x₂`` move by the same ``A`` and ``y₁``, ``y₂`` by the same ``B``.
So the calls' inputs and outputs are *tied* port by port (one permutation, one map): an op's
action may read more than the axes of its parameters (a norm's weight absorbs its input's
sign), and tying every port makes every call move the shared tensor the same way. Ops whose
parameters carry internal factors or translations (attention heads, softmax shifts) are
refused when shared: their extra symmetries would have to agree across calls, which symlab
does not derive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from symlab.errors import UnsupportedOpError
from symlab.graph.archgraph import ArchGraph, Node, ParamSpec
from symlab.symmetry.spec import OpSymmetry

if TYPE_CHECKING:
    from networkx.utils import UnionFind

__all__ = ["shared_keys", "tie_shared_keys"]


def shared_keys(graph: ArchGraph) -> dict[str, list[tuple[Node, ParamSpec]]]:
    """Every movable ``state_dict`` key declared by more than one node, with its readers.

    >>> import torch, symlab as sl
    >>> from torch import nn
    >>> class Twice(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc, self.out = nn.Linear(3, 3), nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         return self.out(torch.tanh(self.fc(torch.tanh(self.fc(x)))))
    >>> sorted(shared_keys(sl.trace(Twice(), torch.randn(2, 3))))
    ['fc.bias', 'fc.weight']
    """
    users: dict[str, list[tuple[Node, ParamSpec]]] = {}
    for node in graph.nodes():
        for p in node.params:
            if p.kind != "fixed":
                users.setdefault(node.key(p), []).append((node, p))
    return {k: v for k, v in users.items() if len(v) > 1}


def tie_shared_keys(
    graph: ArchGraph,
    specs: Mapping[str, OpSymmetry],
    perm_uf: UnionFind,
    seg_uf: UnionFind,
    fixed: set[str],
    parts: Callable[[str], list[str]],
    composite: Mapping[str, list[str]],
) -> None:
    """Tie, across the calls of a shared parameter, their inputs and outputs port by port (see
    the module docstring); calls of different ops or arities are fixed instead."""
    translated = {tr.node for s in specs.values() for tr in s.translations}
    for key, members in shared_keys(graph).items():
        for node, _ in members:
            if specs[node.name].internal or node.name in translated:
                raise UnsupportedOpError(
                    f"{key!r} is read by several calls ({[n.name for n, _ in members]}) and "
                    f"{node.op!r} {node.name!r} moves it with attention heads or a softmax / "
                    "LayerNorm shift, which symlab cannot tie across calls; give each call its "
                    "own module to derive the group of the unshared model"
                )
        first = members[0][0]
        for other, _ in members[1:]:
            # an op's action reads the maps of all its inputs and of its output (a norm's
            # weight takes its input's sign), so the calls are tied port by port
            ins1, ins2 = graph.inputs(first.name), graph.inputs(other.name)
            pairs = [(first.name, other.name), *zip(ins1, ins2, strict=False)]
            if first.op != other.op or len(ins1) != len(ins2):
                fixed.update(p for t in (first.name, other.name, *ins1, *ins2) for p in parts(t))
                continue
            for t1, t2 in pairs:
                if t1 in composite or t2 in composite:
                    fixed.update(p for t in (t1, t2) for p in parts(t))
                    continue
                perm_uf.union(t1, t2)
                seg_uf.union(t1, t2)
