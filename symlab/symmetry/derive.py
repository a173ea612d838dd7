"""Derivation: from an ArchGraph to the structure of its symmetry group.

1. Every node's rule gives an :class:`OpSymmetry` (fail closed on unknown ops).
2. Union-find over tensors: permutation spaces (``tie`` and ``tie_perm``) and, finer, segments
   that share one magnitude/sign map (``tie``). Spaces touching inputs/outputs are fixed.
3. Per segment, the admitted maps are the intersection over every op touching it; sigmoid flips
   survive only where their shift is absorbed (:mod:`symlab.symmetry.flips`).
4. Colour refinement over units with fixed data restricts the permutations to proven
   automorphisms of that data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from symlab.errors import GraphError, UnsupportedOpError, WidthError
from symlab.graph.archgraph import ArchGraph, Node
from symlab.graph.widths import Width
from symlab.symmetry import (  # noqa: F401  (importing registers the built-in rules)
    attention_rules,
    builtin_rules,
    linear_t_rules,
    norm_rules,
    shift_rules,
    structural_rules,
)
from symlab.symmetry.factors import Factor
from symlab.symmetry.flips import flip_paths
from symlab.symmetry.refine import refine_units
from symlab.symmetry.rules import Rule, get_rule
from symlab.symmetry.sharing import Ties, axis_tensor, tie_shared_keys, tie_tied_keys
from symlab.symmetry.spec import ANY, Admits, Mag, OpSymmetry, Sign, Translation

__all__ = ["Structure", "derive_structure"]


@dataclass
class Structure:
    """Everything the group needs to know about the graph (computed once)."""

    graph: ArchGraph
    nodes: list[Node]
    rules: dict[str, Rule]
    specs: dict[str, OpSymmetry]
    tensor_class: dict[str, str | None]  # None: a fixed space
    tensor_segment: dict[str, str]
    composite: dict[str, list[str]]
    repeat: dict[str, int]
    class_width: dict[str, Width]
    class_segments: dict[str, list[str]]
    segment_admits: dict[str, Admits]
    segment_class: dict[str, str]
    segment_inexact: dict[str, str]
    blocks: dict[str, list[list[int]]]
    out_shift: dict[str, object]
    factors: list[Factor]
    translations: dict[str, Translation] = field(default_factory=dict)  # by factor name
    flip_segments: set[str] = field(default_factory=set)  # sign flips that shift (sigmoid)


def derive_structure(
    graph: ArchGraph, fixed_values: Mapping[str, torch.Tensor] | None = None
) -> Structure:
    """Run the derivation on ``graph``; ``fixed_values`` supplies fixed buffers (masks, gates)."""
    graph.validate()
    nodes = list(graph.nodes())
    rules = {n.name: get_rule(n) for n in nodes}
    specs = {n.name: rules[n.name].derive(n, graph) for n in nodes}

    composite: dict[str, list[str]] = {}
    repeat: dict[str, int] = {}
    for s in specs.values():
        composite.update(s.composite)
        repeat.update(s.repeat)
    changed = True
    while changed:  # composites flow through ties, both ways, until nothing changes (a sum
        changed = False  # of a block tensor and a branch computed from it makes both blocks)
        for s in specs.values():
            for a, b in s.tie:
                if (a in composite) != (b in composite):
                    src, dst = (a, b) if a in composite else (b, a)
                    composite[dst] = composite[src]
                    if src in repeat:
                        repeat[dst] = repeat[src]
                    changed = True
    plain = [n.name for n in nodes if n.name not in composite]
    from networkx.utils import UnionFind  # here: networkx costs import time

    perm_uf, seg_uf = UnionFind(plain), UnionFind(plain)
    admits: dict[str, Admits] = {}
    fixed: set[str] = set()

    def parts(t: str) -> list[str]:
        return [p for q in composite[t] for p in parts(q)] if t in composite else [t]

    for name, s in specs.items():
        for a, b in s.tie:
            if a in composite and b in composite:
                if composite[a] != composite[b] or repeat.get(a, 1) != repeat.get(b, 1):
                    _no_composite(a, b, composite, name)
                continue
            perm_uf.union(a, b)
            seg_uf.union(a, b)
        for a, b in s.tie_perm:
            _no_composite(a, b, composite, name)
            perm_uf.union(a, b)
        for t, adm, _why in s.admits:
            for p in parts(t):
                admits[p] = admits.get(p, ANY) & adm
        for t in s.fixed:
            fixed.update(parts(t))
        for fd in s.fixed_data:  # fixed data read through a block tensor: keep it still
            for a in fd.axes:
                if a in composite:
                    fixed.update(parts(a))

    flips = flip_paths(graph, specs, repeat)
    for src, level in flips.levels.items():  # flips survive where their shift is absorbed
        for p in parts(src):
            admits[p] = admits.get(p, ANY) & Admits(Mag.GL, level)
    ties = Ties(perm_uf, seg_uf, admits, fixed, parts, composite, flips.out_shift)
    tie_tied_keys(graph, specs, ties)
    tie_shared_keys(graph, specs, ties)
    order = {t: i for i, t in enumerate(plain)}
    first = {}
    for t in plain:
        first.setdefault(perm_uf[t], t)
    fixed_roots = {perm_uf[t] for t in fixed}
    tensor_class = {t: (None if perm_uf[t] in fixed_roots else first[perm_uf[t]]) for t in plain}
    seg_first: dict[str, str] = {}
    for t in plain:
        seg_first.setdefault(seg_uf[t], t)
    tensor_segment = {t: seg_first[seg_uf[t]] for t in plain}

    widths = {n.name: n.width for n in nodes}
    class_width: dict[str, Width] = {}
    class_segments: dict[str, list[str]] = {}
    segment_admits: dict[str, Admits] = {}
    segment_class: dict[str, str] = {}
    root_width: dict[str, tuple[str, Width]] = {}
    for t in plain:
        if tensor_class[t] is None:
            continue  # fixed spaces never move, so their widths need not agree
        first_t, w = root_width.setdefault(perm_uf[t], (t, widths[t]))
        if w != widths[t]:
            raise GraphError(
                f"tensors {first_t!r} (width {w}) and {t!r} (width {widths[t]}) must move "
                "together but have different widths"
            )
    for t in plain:
        k, seg = tensor_class[t], tensor_segment[t]
        if k is None:
            continue
        class_width.setdefault(k, widths[t])
        if seg not in segment_admits:
            class_segments.setdefault(k, []).append(seg)
            segment_admits[seg] = ANY
            segment_class[seg] = k
        segment_admits[seg] &= admits.get(t, ANY)

    segment_inexact = {}
    for name, s in specs.items():
        if s.inexact:
            for x in graph.inputs(name):
                for p in parts(x):
                    segment_inexact[tensor_segment[p]] = s.inexact

    blocks = _refine(graph, specs, tensor_class, class_width, fixed_values)
    out_shift = dict(flips.out_shift)
    st = Structure(
        graph,
        nodes,
        rules,
        specs,
        tensor_class,
        tensor_segment,
        composite,
        repeat,
        class_width,
        class_segments,
        segment_admits,
        segment_class,
        segment_inexact,
        blocks,
        out_shift,
        [],
        flip_segments={
            tensor_segment[p]
            for src, level in flips.levels.items()
            if level == Sign.DIAG
            for p in parts(src)
            if tensor_segment.get(p) is not None and tensor_class.get(p) is not None
        },
    )
    st.factors = _factors(st, order)
    return st


def _no_composite(a: str, b: str, composite: Mapping[str, list[str]], where: str) -> None:
    for t in (a, b):
        if t in composite:
            raise UnsupportedOpError(
                f"node {where!r} ties the concatenation {t!r} to another tensor elementwise; "
                "symlab derives concatenations read by linear layers only — register a rule "
                "or restructure the model"
            )


def _refine(
    graph: ArchGraph,
    specs: Mapping[str, OpSymmetry],
    tensor_class: Mapping[str, str | None],
    class_width: Mapping[str, Width],
    fixed_values: Mapping[str, torch.Tensor] | None,
) -> dict[str, list[list[int]]]:
    data = [fd for s in specs.values() for fd in s.fixed_data]
    if not data:
        return {}
    if not graph.is_concrete:
        raise WidthError("fixed data (asymmetric layers, FiGLU) needs integer widths")
    if fixed_values is None and any(fd.value is None for fd in data):
        fixed_values = graph.build(seed=0).state_dict()
    fixed_values = fixed_values or {}
    items = []
    for fd in data:
        if fd.value is not None:
            arr = fd.value.detach().cpu().double().numpy()
        elif fd.key in fixed_values:
            arr = fixed_values[fd.key].detach().cpu().double().numpy()
        else:
            raise GraphError(f"fixed data {fd.key!r} is missing from the model's state_dict")
        items.append((arr, tuple(tensor_class.get(a) if a else None for a in fd.axes)))
    sizes = {k: int(w) for k, w in class_width.items()}
    return refine_units(sizes, items)


def _factors(st: Structure, order: Mapping[str, int]) -> list[Factor]:
    keys_by_tensor: dict[str, list[tuple[str, int]]] = {}
    for node in st.nodes:
        for p in node.params:
            if p.kind == "fixed":
                continue
            for axis, role in enumerate(p.axes):
                t = axis_tensor(st.graph, node, role)
                if t is None:
                    continue
                for part in _parts(st, t):
                    keys_by_tensor.setdefault(part, []).append((node.key(p), axis))

    def axes_of(tensors: list[str]) -> tuple[tuple[str, int], ...]:
        return tuple(dict.fromkeys(a for t in tensors for a in keys_by_tensor.get(t, [])))

    members: dict[str, list[str]] = {}
    seg_members: dict[str, list[str]] = {}
    for t, k in st.tensor_class.items():
        if k is not None:
            members.setdefault(k, []).append(t)
            seg_members.setdefault(st.tensor_segment[t], []).append(t)
    factors = []
    for k in sorted(st.class_segments, key=order.__getitem__):
        n = st.class_width[k]
        segs = st.class_segments[k]
        blocks = st.blocks.get(k)
        all_gl = all(st.segment_admits[s].mag == Mag.GL for s in segs)
        trivial = blocks is not None and all(len(b) == 1 for b in blocks)
        if not all_gl and not trivial:
            full = blocks is None or len(blocks) == 1
            factors.append(
                Factor(
                    f"P[{k}]",
                    "permutation",
                    n,
                    k,
                    axes_of(members[k]),
                    None if full else tuple(map(tuple, blocks)),
                )
            )
        for s in segs:
            seg_tensors = seg_members[s]
            ax = axes_of(seg_tensors)
            a = st.segment_admits[s]
            note = st.segment_inexact.get(s, "")
            if a.mag == Mag.GL:
                factors.append(Factor(f"GL[{s}]", "GL", n, s, ax))
                continue
            if a.mag == Mag.DIAG:
                factors.append(
                    Factor(f"scale[{s}]", "scaling", n, s, ax, exact=not note, note=note)
                )
            elif a.mag == Mag.COMMON:
                factors.append(
                    Factor(f"scale[{s}]", "common_scaling", n, s, ax, exact=not note, note=note)
                )
            flip = s in st.flip_segments
            if a.sign == Sign.DIAG:
                factors.append(Factor(f"sign[{s}]", "flip" if flip else "sign", n, s, ax))
            elif a.sign == Sign.COMMON:
                factors.append(Factor(f"sign[{s}]", "common_sign", n, s, ax))
    for node in st.nodes:
        space = f"{node.name}#heads"
        inner = tuple(
            (node.key(p), i)
            for p in node.params
            if p.kind != "fixed"
            for i, role in enumerate(p.axes)
            if role == "none"
        )
        for f in st.specs[node.name].internal:
            prefix = {"permutation": "P", "complex_scaling": "C"}.get(f.kind, "GL")
            factors.append(
                Factor(
                    f"{prefix}[{node.name}#{f.suffix}]",
                    f.kind,
                    f.size,
                    space,  # type: ignore[arg-type]
                    inner,
                    copies=f.copies,
                    internal=True,
                )
            )
            st.segment_class.setdefault(space, space)
    for node in st.nodes:
        for tr in st.specs[node.name].translations:
            owner = st.graph.node(tr.node)
            keys = {p.name: owner.key(p) for p in owner.params}
            name = f"T[{tr.node}#{tr.suffix}]"
            axes = tuple((keys[p], a) for p, a in tr.axes)
            factors.append(Factor(name, "translation", tr.size, f"{tr.node}#{tr.suffix}", axes))
            st.translations[name] = tr
    return factors


def _parts(st: Structure, t: str) -> list[str]:
    if t in st.composite:
        return [p for q in st.composite[t] for p in _parts(st, q)]
    return [t]
