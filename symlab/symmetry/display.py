"""How a SymmetryGroup shows itself: the product of factors, the order, one line per factor.

Each factor's line says which parameters it *moves*: what acting with that factor alone
changes, with the index ranges where only part of an axis changes (``GL[attn#qk]`` moves the
query and key rows of a fused projection, not the values, and not the output projection; a
sign flip before a BatchNorm moves the norm's weight and running mean, not its variance).
Long groups (a ResNet) print one block per module (stage), each line wrapped.

Acting costs a pass over every parameter a factor reaches, for every factor: for a large model
(a ResNet-50 or a ViT-B/16: seconds to tens of seconds) the printed group lists instead the
parameter axes each factor acts on (its declared axes, the contract of :attr:`Factor.axes`), says
so, and :func:`factor_moves` acts with one factor when asked.
"""

from __future__ import annotations

import math
import textwrap
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from symlab.symmetry.factors import Factor, GroupElement
    from symlab.symmetry.group import SymmetryGroup

__all__ = ["factor_moves", "group_repr", "order_str", "product_str"]

#: Characters per printed line.
WIDTH = 110
#: Parameter elements the printed group may act on (summed over its factors) to list what each
#: factor moves; above it, lines list the declared axes (about a quarter of a second of acting).
ACT_BUDGET = 1 << 23
_KIND_ORDER = ("permutation", "GL", "scaling", "common_scaling", "sign", "flip", "common_sign")
_MOVES: weakref.WeakKeyDictionary[SymmetryGroup, dict[str, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def product_str(G: SymmetryGroup, latex: bool) -> str:
    """The direct product of the factors, as text or LaTeX."""
    return _product(G.factors, latex)


def _product(factors: Sequence[Factor], latex: bool) -> str:
    parts = [f.latex() if latex else f.short() for f in factors]
    parts = [p for p in parts if p]
    if not parts:
        return "1" if not latex else r"\{e\}"
    return (r" \times " if latex else " × ").join(parts)


def _collapsed(factors: Sequence[Factor]) -> str:
    """``S_16^3 × (R_{>0}^16)^6``: equal factors counted, in order of first appearance."""
    counts: dict[str, int] = {}
    rank = {k: i for i, k in enumerate(_KIND_ORDER)}
    for f in sorted(factors, key=lambda f: rank.get(f.kind, len(rank))):
        s = f.short()
        if s:
            counts[s] = counts.get(s, 0) + 1
    parts = []
    for s, c in counts.items():
        base = f"({s})" if "^" in s or " " in s else s
        parts.append(s if c == 1 else f"{base}^{c}")
    return " × ".join(parts) or "1"


def _ranges(hit: torch.Tensor) -> str:
    """``"0:16, 32:48"`` for the True runs of a boolean vector."""
    idx = hit.nonzero().flatten().tolist()
    runs: list[list[int]] = []
    for i in idx:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return ", ".join(f"{a}:{b}" for a, b in runs)


def _moving_value(f: Factor, identity: GroupElement, sample: GroupElement) -> torch.Tensor:
    """A value of ``f`` that moves every unit it can: a cyclic shift within each block,
    all signs flipped, random scalings and matrices."""
    n = int(f.size)
    if f.kind == "permutation":
        value = torch.arange(n)
        for block in f.blocks or [list(range(n))]:
            idx = torch.as_tensor(block)
            value[idx] = idx.roll(1)
        return value
    if f.kind in ("sign", "flip", "common_sign"):
        return -identity[f.name]
    return sample[f.name]


def _acted_moves(
    G: SymmetryGroup, f: Factor, value: torch.Tensor, randoms: dict[str, torch.Tensor]
) -> tuple[str, ...]:
    """Act on random parameters with ``f`` alone (at ``value``) and list what changed: the
    axes ``f`` declares, where they changed (with the index ranges when only some did), then any
    other parameter the action changed (a norm's weight compensating a sign flip). ``randoms``
    holds the random parameters by key, made on first use and shared by the factors of one
    listing (actions make new tensors: they never write into their parameters)."""
    g = torch.Generator().manual_seed(len(randoms))
    perms: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    internal: dict[str, dict[str, torch.Tensor]] = {}
    if f.internal:
        node_name, suffix = f.name[f.name.index("[") + 1 : -1].split("#")
        internal[node_name] = {suffix: value}
    elif f.kind == "permutation":
        perms[f.space] = value
    else:
        n = int(f.size)
        scales[f.space] = value if value.ndim else torch.full((n,), float(value))
    transforms = G.tensor_transforms(perms, scales)
    graph = G.graph
    changed: dict[str, torch.Tensor] = {}  # key -> changed entries
    for node in G._st.nodes:
        movable = [p for p in node.params if p.kind != "fixed"]
        ins = graph.inputs(node.name)
        still = transforms[node.name].is_identity and all(transforms[t].is_identity for t in ins)
        if not movable or (still and node.name not in internal):
            continue
        params = {}
        for p in movable:
            key = node.key(p)
            if key not in randoms:
                randoms[key] = torch.randn(tuple(int(s) for s in p.shape), generator=g)
            params[p.name] = randoms[key]
        moved = G._act_node(node, params, transforms, internal)
        for p in movable:
            if moved[p.name] is params[p.name] or torch.equal(moved[p.name], params[p.name]):
                continue  # untouched entries are copied exactly
            changed[node.key(p)] = moved[p.name] != params[p.name]
    out = []
    for key, axis in f.axes:
        diff = changed.pop(key, None)
        if diff is None:
            continue
        others = [d for d in range(diff.ndim) if d != axis]
        hit = diff.any(dim=others) if others else diff
        partial = diff.ndim and not bool(hit.all())
        out.append(f"{key}:{axis}[{_ranges(hit)}]" if partial else f"{key}:{axis}")
    return (*out, *changed)


def factor_moves(G: SymmetryGroup, f: Factor) -> tuple[str, ...]:
    """The parameters ``f`` moves — what acting with ``f`` alone changes — as ``"key:axis"``
    (``"key:axis[a:b, ...]"`` when only some indices along the axis move; a bare ``"key"`` for
    a parameter that changes although ``f`` does not act on its axes, such as a norm's weight
    compensating a sign flip). Translations list the axes they add to; groups with symbolic
    widths list the axes their factors run along.

    >>> import torch, symlab as sl
    >>> block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    >>> G = sl.symmetries(block, torch.randn(2, 3, 8))
    >>> qk = next(f for f in G.factors if f.name == "GL[self_attn#qk]")
    >>> factor_moves(G, qk)
    ('self_attn.in_proj_weight:0[0:16]', 'self_attn.in_proj_bias:0[0:16]')
    """
    if f.kind == "translation" or not G.graph.is_concrete:
        return _declared(f)
    cache = _MOVES.setdefault(G, {})
    if f.name not in cache:
        _act_all(G, [f])
    return cache[f.name]


def _act_all(G: SymmetryGroup, factors: Sequence[Factor]) -> None:
    """Fill the cache of what each of ``factors`` moves: one identity, one sample and one set
    of random parameters for them all."""
    cache = _MOVES.setdefault(G, {})
    todo = [h for h in factors if h.kind != "translation" and h.name not in cache]
    if not todo:
        return
    identity, sample = G.identity(), G.sample(torch.Generator().manual_seed(0))
    randoms: dict[str, torch.Tensor] = {}
    for h in todo:
        cache[h.name] = _acted_moves(G, h, _moving_value(h, identity, sample), randoms)


def _declared(f: Factor) -> tuple[str, ...]:
    return tuple(f"{k}:{a}" for k, a in f.axes)


def _acting_cost(G: SymmetryGroup) -> int:
    """Parameter elements the listing of every factor's moves would act on (declared axes)."""
    if not G.graph.is_concrete:
        return 0
    cache = _MOVES.get(G, {})
    size = {key: math.prod(int(s) for s in p.shape) for key, (_, p) in G.graph.state_keys().items()}
    return sum(
        sum(size.get(k, 0) for k in {k for k, _ in f.axes})
        for f in G.factors
        if f.kind != "translation" and f.name not in cache
    )


def _module(f: Factor) -> list[str]:
    return f.space.split("#")[0].split(".")


def _by_module(factors: Sequence[Factor]) -> list[tuple[str, list[Factor]]]:
    """Factors grouped by the first module level that tells them apart (ResNet stages)."""
    paths = [_module(f) for f in factors]
    depth = 0
    while all(len(p) > depth + 1 for p in paths) and len({p[depth] for p in paths}) == 1:
        depth += 1
    groups: dict[str, list[Factor]] = {}
    for f, p in zip(factors, paths, strict=True):
        groups.setdefault(".".join(p[: depth + 1]), []).append(f)
    return list(groups.items())


def _factor_lines(G: SymmetryGroup, factors: Sequence[Factor], indent: int, act: bool) -> list[str]:
    lines = []
    name_w = min(max((len(f.name) for f in factors), default=0), 32)
    short_w = min(max((len(f.short()) for f in factors), default=0), 16)
    for f in factors:
        moves = factor_moves(G, f) if act else _declared(f)
        shown = ", ".join(moves[:4]) + (f" (+{len(moves) - 4} more)" if len(moves) > 4 else "")
        caveat = f"  [{f.note}]" if f.note else ""
        verb = "moves" if act or f.kind == "translation" else "acts on"
        text = f"{' ' * indent}{f.name:<{name_w}}  {f.short():<{short_w}}  {verb} "
        text += f"{shown or 'nothing'}{caveat}"
        lines += textwrap.wrap(text, WIDTH, subsequent_indent=" " * (indent + 4),
                               break_long_words=False, break_on_hyphens=False)  # fmt: skip
    return lines


def group_repr(G: SymmetryGroup) -> str:
    """A readable multi-line description: product, order, dimension, one line per factor;
    grouped by module when the product does not fit on one line. Each line says what the factor
    moves (by acting with it), or for a large model (acting would touch more than
    :data:`ACT_BUDGET` parameter elements) the parameter axes it acts on."""
    log10 = G.log10_order
    log10_s = f"{log10:.4g}" if isinstance(log10, float) else str(log10)
    order = f"  order = {order_str(G)}  (log10 = {log10_s}),  dimension = {G.dimension}"
    act = _acting_cost(G) <= ACT_BUDGET
    if act:
        _act_all(G, G.factors)
    note = [] if act else textwrap.wrap(
        "  (a large model: each line lists the parameter axes the factor acts on; "
        "symlab.symmetry.display.factor_moves(G, factor) acts with it to list exactly what "
        "it changes)", WIDTH, subsequent_indent="   ")  # fmt: skip
    head = f"SymmetryGroup  {product_str(G, False)}"
    if len(head) <= WIDTH:
        return "\n".join([head, order, *note, *_factor_lines(G, G.factors, 2, act)])
    groups = _by_module(G.factors)
    lines = [f"SymmetryGroup  {len(G.factors)} factors, by module:", order, *note]
    for label, factors in groups:
        lines += textwrap.wrap(f"  {label}: {_collapsed(factors)}", WIDTH, subsequent_indent="    ")
        lines += _factor_lines(G, factors, 4, act)
    return "\n".join(lines)


def order_str(G: SymmetryGroup) -> str:
    """The order as a short product, e.g. ``128!^2·2^256`` (exact value: :attr:`order`)."""
    if not G.graph.is_concrete:
        return str(G.order)
    facts: dict[int, int] = {}
    twos = 0
    for f in G.factors:
        if f.kind == "permutation":
            for k in [len(b) for b in f.blocks] if f.blocks else [int(f.size)] * f.copies:
                if k > 1:
                    facts[k] = facts.get(k, 0) + 1
        elif f.kind in ("sign", "flip"):
            twos += int(f.size)
        elif f.kind == "common_sign":
            twos += 1
    parts = [f"{k}!" + (f"^{c}" if c > 1 else "") for k, c in sorted(facts.items())]
    if twos:
        parts.append(f"2^{twos}")
    return "·".join(parts) or "1"
