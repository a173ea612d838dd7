"""How a SymmetryGroup shows itself: the product of factors, the order, one line per factor."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from symlab.symmetry.group import SymmetryGroup

__all__ = ["group_repr", "order_str", "product_str"]


def product_str(G: SymmetryGroup, latex: bool) -> str:
    """The direct product of the factors, as text or LaTeX."""
    parts = [f.latex() if latex else f.short() for f in G.factors]
    parts = [p for p in parts if p]
    if not parts:
        return "1" if not latex else r"\{e\}"
    return (r" \times " if latex else " × ").join(parts)


def group_repr(G: SymmetryGroup) -> str:
    """A readable multi-line description: product, order, dimension, one line per factor."""
    lines = [f"SymmetryGroup  {product_str(G, False)}"]
    log10 = G.log10_order
    log10_s = f"{log10:.4g}" if isinstance(log10, float) else str(log10)
    lines.append(f"  order = {order_str(G)}  (log10 = {log10_s}),  dimension = {G.dimension}")
    for f in G.factors:
        moved = ", ".join(f"{k}:{a}" for k, a in f.axes[:4])
        more = f" (+{len(f.axes) - 4})" if len(f.axes) > 4 else ""
        caveat = f"  [{f.note}]" if f.note else ""
        lines.append(f"  {f.name:<28} {f.short():<14} moves {moved}{more}{caveat}")
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
