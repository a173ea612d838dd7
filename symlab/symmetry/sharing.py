"""Weight sharing: one ``state_dict`` key read by several graph nodes.

A module called more than once (ALBERT's shared layers, one ``nn.Linear`` applied to two
inputs) becomes one graph node per call, all declaring the same parameter keys
(``attrs['key_prefix']``). The parameter is one tensor, so every symmetry must move it the same
way in every call: for ``y₁ = W x₁`` and ``y₂ = W x₂``, ``W ↦ B W A⁻¹`` is a symmetry of both
calls only when ``x₁`` and ``x₂`` move by the same ``A`` and ``y₁``, ``y₂`` by the same ``B``.
So the tensors each axis runs along are *tied* (one permutation, one map) across the calls;
where every call reads the axis in the same role (input or output) nothing else is lost, which
is the case for a module called twice. Ops whose parameters carry internal factors or
translations (attention heads, softmax shifts) are refused when shared: their extra symmetries
would have to agree across calls, which symlab does not derive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from networkx.utils import UnionFind

from symlab.errors import UnsupportedOpError
from symlab.graph.archgraph import ArchGraph, Node, ParamSpec
from symlab.symmetry.spec import ANY, Admits, Mag, OpSymmetry, Sign

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
    admits: dict[str, Admits],
    fixed: set[str],
    parts: Callable[[str], list[str]],
    composite: Mapping[str, list[str]],
    axis_tensor: Callable[[ArchGraph, Node, str], str | None],
) -> None:
    """Tie, across the calls, the tensors every axis of a shared parameter runs along (see the
    module docstring); ``axis_tensor(graph, node, role)`` names the tensor of an axis role."""
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
        first, p1 = members[0]
        for other, p2 in members[1:]:
            for a1, a2 in zip(p1.axes, p2.axes, strict=True):
                t1, t2 = axis_tensor(graph, first, a1), axis_tensor(graph, other, a2)
                if t1 is None and t2 is None:
                    continue
                if t1 is None or t2 is None or t1 in composite or t2 in composite:
                    fixed.update(p for t in (t1, t2) if t is not None for p in parts(t))
                    continue
                perm_uf.union(t1, t2)
                seg_uf.union(t1, t2)
                if a1 != a2:  # read in one call, written in another: M = M⁻ᵀ, signs only
                    for t in (t1, t2):
                        admits[t] = admits.get(t, ANY) & Admits(Mag.NONE, Sign.DIAG)
