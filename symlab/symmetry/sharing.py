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
does not derive. A sigmoid's flip shift absorbed into the shared bias (``b − W c``) must be the
same in every call too: ports where one call's input carries the shift and the other's does not
keep no sign flips, and so do inputs carrying one where the calls absorb it through different
weights (one bias under two weights, ``F.linear(x, W1, c)`` and ``F.linear(y, W2, c)``).

Weight *tying* (one tensor under several keys, ``lm_head.weight = wte.weight``) is handled the
same way where the places are one op (:func:`tie_tied_keys`), and axis by axis otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from symlab.errors import UnsupportedOpError
from symlab.graph.archgraph import ArchGraph, Node, ParamSpec
from symlab.symmetry.shift_rules import logit_translation
from symlab.symmetry.spec import ANY, NONE, Admits, Mag, OpSymmetry, Sign

if TYPE_CHECKING:
    from networkx.utils import UnionFind

__all__ = [
    "Ties",
    "axis_tensor",
    "shared_keys",
    "tie_shared_keys",
    "tie_tied_keys",
    "tied_groups",
]


@dataclass
class Ties:
    """The derivation's state that sharing and tying constrain: the unions of tensors moving by
    one permutation (``perm_uf``) and one map (``seg_uf``), per-tensor admissible maps, the
    fixed tensors, a tensor's plain parts (block tensors are concatenations), the block tensors,
    and the flip shift each tensor carries (:attr:`~symlab.symmetry.flips.FlipPaths.out_shift`).

    >>> from networkx.utils import UnionFind
    >>> t = Ties(UnionFind(), UnionFind(), {}, set(), lambda x: [x], {}, {})
    >>> t.no_signs("h"); t.admits["h"].sign.name
    'NONE'
    """

    perm_uf: UnionFind
    seg_uf: UnionFind
    admits: dict[str, Admits]
    fixed: set[str]
    parts: Callable[[str], list[str]]
    composite: Mapping[str, list[str]]
    shifts: Mapping[str, object]

    def restrict(self, tensor: str, adm: Admits) -> None:
        """Intersect the maps ``tensor`` (each of its parts) admits with ``adm``."""
        for p in self.parts(tensor):
            self.admits[p] = self.admits.get(p, ANY) & adm

    def no_signs(self, tensor: str) -> None:
        """No sign flips (so no flip shift) on ``tensor``."""
        self.restrict(tensor, Admits(Mag.GL, Sign.NONE))

    def fix(self, *tensors: str | None) -> None:
        """Keep these tensors' units still."""
        self.fixed.update(p for t in tensors if t is not None for p in self.parts(t))

    def union(self, a: str, b: str) -> None:
        """``a`` and ``b`` move by one permutation and one map."""
        self.perm_uf.union(a, b)
        self.seg_uf.union(a, b)


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


def tie_shared_keys(graph: ArchGraph, specs: Mapping[str, OpSymmetry], ties: Ties) -> None:
    """Tie, across the calls of a shared parameter, their inputs and outputs port by port (see
    the module docstring); calls of different ops are tied axis by axis, as tied weights
    (:func:`tie_tied_keys`), and calls of one op with different arities are fixed."""
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
        # one call reading it twice (F.layer_norm(x, s, w, w)), or different ops reading it
        # (an embedding's table as a hand-written head): as tied weights, axis by axis
        if len({n.name for n, _ in members}) < len(members) or len({n.op for n, _ in members}) > 1:
            _tie_axes(graph, members, ties)
            continue
        first = members[0][0]
        for other, _ in members[1:]:
            # an op's action reads the maps of all its inputs and of its output (a norm's
            # weight takes its input's sign), so the calls are tied port by port
            _tie_ports(graph, first, other, ties)
            if not _absorb_alike(graph, specs, first, other):
                # one bias, two weights (F.linear(x, W1, c), F.linear(y, W2, c)): the flip
                # shifts c - W1 s and c - W2 s differ: inputs carrying one keep no sign flips
                for t in (*graph.inputs(first.name), *graph.inputs(other.name)):
                    if ties.shifts.get(t) is not None:
                        ties.no_signs(t)


def axis_tensor(graph: ArchGraph, node: Node, role: str) -> str | None:
    """The tensor whose units a parameter axis with this role runs along (None: no tensor)."""
    if role == "out":
        return node.name
    if role == "in":
        return graph.inputs(node.name)[0]
    return None


def tied_groups(graph: ArchGraph) -> list[list[tuple[Node, ParamSpec]]]:
    """The groups of :attr:`~symlab.graph.ArchGraph.tied_keys` that more than one graph node
    reads (``(node, parameter)`` per key read); a key no node reads (T5's ``shared.weight``
    beside ``encoder.embed_tokens.weight``) constrains nothing: the action copies the moved
    tensor to it.

    >>> import torch, symlab as sl
    >>> from torch import nn
    >>> class Tied(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb, self.head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    ...         self.head.weight = self.emb.weight
    ...     def forward(self, idx):
    ...         return self.head(torch.tanh(self.emb(idx)))
    >>> [[n.key(p) for n, p in g] for g in tied_groups(sl.trace(Tied(), torch.tensor([[1, 2]])))]
    [['emb.weight', 'head.weight']]
    """
    keys = graph.state_keys()
    groups = [[keys[k] for k in group if k in keys] for group in graph.tied_keys]
    return [g for g in groups if len(g) > 1]


def tie_tied_keys(graph: ArchGraph, specs: Mapping[str, OpSymmetry], ties: Ties) -> None:
    """Tied weights (one tensor under several keys, e.g. ``lm_head.weight = wte.weight``): the
    tensor must move identically in every place.

    An op's action may read more than the maps of its parameter's axes: a norm's weight takes
    its input's sign, a bias the shift of a sigmoid flip through the layer's own weight. So:

    * places that are the same op with the same attributes, reading the tied parameter under
      the same name, whose action reads no other parameter of the op (no absorbed shift) or
      all of whose parameters are tied pairwise, are tied port by port, as weight sharing
      (:func:`tie_shared_keys`): the action then sees the same maps in every place;
    * otherwise each axis moves identically in every place: the tensors those axes belong to
      share one permutation and one map ``M`` with ``M = M⁻¹`` where one place reads the axis
      and the other writes it — signs only, no scaling — and every other tensor the op reads
      or writes (a norm's input, a layer's input for its bias) may only be permuted.

    Sound, not complete: orthogonal maps are not derived.
    """
    groups = tied_groups(graph)
    if not groups:
        return
    _drop_tied_translations(graph, specs, groups)
    translated = {(tr.node, a) for s in specs.values() for tr in s.translations for a, _ in tr.axes}
    for members in groups:
        for node, p in members:
            if specs[node.name].internal or (node.name, p.name) in translated or p.kind == "fixed":
                others = [n.key(q) for n, q in members if n.key(q) != node.key(p)]
                raise UnsupportedOpError(
                    f"{node.key(p)!r} is tied to {others} and is moved by {node.op!r} "
                    f"{node.name!r} with attention heads or as fixed data, which symlab cannot "
                    "tie yet; untie the weights (clone them) to derive the group of the untied "
                    "model"
                )
        if _alike(graph, specs, members):
            first = members[0][0]
            for other, _ in members[1:]:
                _tie_ports(graph, first, other, ties)
            continue
        _tie_axes(graph, members, ties)


def _tie_axes(graph: ArchGraph, members: list[tuple[Node, ParamSpec]], ties: Ties) -> None:
    """One tensor read in several places that are not one op: each axis moves identically in
    every place (signs and permutations only), and whatever else the places' actions read
    only by permutations (:func:`tie_tied_keys`)."""
    for (n1, p1), (n2, p2) in itertools.pairwise(members):
        for a1, a2 in zip(p1.axes, p2.axes, strict=True):
            t1, t2 = axis_tensor(graph, n1, a1), axis_tensor(graph, n2, a2)
            if t1 is None and t2 is None:
                continue
            if t1 is None or t2 is None or t1 in ties.composite or t2 in ties.composite:
                ties.fix(t1, t2)
                continue
            ties.union(t1, t2)
            for t in (t1, t2):
                ties.restrict(t, Admits(Mag.NONE, Sign.DIAG))
    for node, p in members:  # what the action reads besides the axes: permutations only
        axes = {axis_tensor(graph, node, role) for role in p.axes}
        for t in {*graph.inputs(node.name), node.name} - axes:
            ties.restrict(t, NONE)


def _alike(
    graph: ArchGraph, specs: Mapping[str, OpSymmetry], members: list[tuple[Node, ParamSpec]]
) -> bool:
    """The tied places are one op (same attributes, arity and parameter name) whose action
    depends on the maps of its ports alone for that parameter."""
    n1, p1 = members[0]

    def attrs(n: Node) -> dict[str, object]:
        return {k: v for k, v in n.attrs.items() if k != "key_prefix"}

    for n2, p2 in members[1:]:
        if (n2.op, p2.name, len(graph.inputs(n2.name))) != (
            n1.op, p1.name, len(graph.inputs(n1.name))
        ) or attrs(n2) != attrs(n1):  # fmt: skip
            return False
        if not _absorb_alike(graph, specs, n1, n2):
            return False
    return True


def _absorb_alike(graph: ArchGraph, specs: Mapping[str, OpSymmetry], n1: Node, n2: Node) -> bool:
    """Two places of a parameter absorb the same flip shift: neither absorbs one, or every
    movable parameter the absorption reads (all but the biases it writes: ``b - W c`` reads
    ``W``) is one tensor in both places. Their biases may differ (``F.linear(x, W, b1)`` and
    ``F.linear(y, W, b2)`` each absorb ``W c``); one bias under two weights may not."""
    if not (specs[n1.name].absorbs_shift or specs[n2.name].absorbs_shift):
        return True
    tied = {k: i for i, group in enumerate(graph.tied_keys) for k in group}

    def read(n: Node) -> dict[str, object]:
        keys = {q.name: n.key(q) for q in n.params if q.kind != "fixed"}
        return {name: tied.get(k, k) for name, k in keys.items() if not name.startswith("bias")}

    return read(n1) == read(n2)


def _tie_ports(graph: ArchGraph, first: Node, other: Node, ties: Ties) -> None:
    """Tie two places of one parameter port by port (output with output, inputs in order);
    places of different ops or arities are fixed instead. Where one port carries a flip shift
    (a sigmoid's ``(1 - s)/2``) that the other does not, or another one, the op would absorb
    different shifts into the one parameter (``b - W c₁`` and ``b - W c₂``): those ports keep
    no sign flips."""
    ins1, ins2 = graph.inputs(first.name), graph.inputs(other.name)
    if first.op != other.op or len(ins1) != len(ins2):
        ties.fix(first.name, other.name, *ins1, *ins2)
        return
    for t1, t2 in [(first.name, other.name), *zip(ins1, ins2, strict=True)]:
        if t1 in ties.composite or t2 in ties.composite:
            ties.fix(t1, t2)
            continue
        ties.union(t1, t2)
        if _shift_key(ties.shifts.get(t1)) != _shift_key(ties.shifts.get(t2)):
            ties.no_signs(t1)
            ties.no_signs(t2)


def _shift_key(fn: object) -> object:
    """Equal for two shift functions that compute the same (one closure-free code object)."""
    if fn is None:
        return None
    code = getattr(fn, "__code__", None)
    return code if code is not None and getattr(fn, "__closure__", None) is None else id(fn)


def _drop_tied_translations(
    graph: ArchGraph, specs: Mapping[str, OpSymmetry], groups: list[list[tuple[Node, ParamSpec]]]
) -> None:
    """A translation (softmax or LayerNorm shift) moves one copy of a tied tensor only, which
    the tie cannot carry: drop it, keeping a bias-only shift where the bias is not tied."""
    tied = {n.key(p) for group in groups for n, p in group}
    for spec in specs.values():
        kept = []
        for tr in spec.translations:
            owner = graph.node(tr.node)
            hit = {p.name for p in owner.params if owner.key(p) in tied} & {p for p, _ in tr.axes}
            if not hit:
                kept.append(tr)
            elif hit == {"weight"} and any(p == "bias" for p, _ in tr.axes):
                kept.append(logit_translation(owner, tr.suffix, weight=False))
        spec.translations[:] = kept
