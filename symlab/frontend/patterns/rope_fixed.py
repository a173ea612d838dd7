"""Rotary embeddings outside a recognised attention block: one opaque node.

The attention matcher (:mod:`.attention`) reads a rotary embedding inside the block it proves
and derives the head maps that commute with the rotations (:mod:`symlab.symmetry.rope_rules`).
When the block around it is not recognised — a norm on the queries and keys (Qwen3, OLMo-2,
Gemma-3), a soft cap on the scores (Gemma-2), a differential or grouped-norm attention — the
embedding ``q * cos + rotate_half(q) * sin`` would be read op by op, and the concatenation
inside ``rotate_half`` ties units across the two halves of the head dimension, which no
per-unit rule models (refused). A proven site (:func:`.attention_rope.rope_sites`: fixed,
pair-symmetric tables, a signed swap inside each pair) is instead read as one *opaque* node on
its input: the rotated tensor and its input are fixed, which is sound whatever follows (the
queries and keys then move with nothing; the values, the output projection and the rest of
the network keep whatever symmetry their own ops prove). The pattern yields to attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch.fx as fx

from symlab.frontend.patterns.attention_rope import RopeSite, rope_sites
from symlab.frontend.patterns.registry import register_pattern

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["RopeFixed", "emit_rope_fixed", "find_rope_fixed"]


@dataclass(frozen=True)
class RopeFixed:
    """A rotary embedding read as one opaque node: its site and the nodes it swallows."""

    site: RopeSite
    nodes: frozenset[fx.Node]


def find_rope_fixed(gm: fx.GraphModule) -> tuple[dict[fx.Node, RopeFixed], set[fx.Node]]:
    """Every proven rotary embedding whose inner tensors are read by nothing outside it, keyed
    by its output node; the nodes between its input and its output are swallowed."""
    found: dict[fx.Node, RopeFixed] = {}
    for out, site in rope_sites(gm).items():
        inner = set(site.inner) - {out, site.x}
        if any(u not in inner and u is not out for n in inner for u in n.users):
            continue  # an inner tensor read elsewhere: its reader would see an untracked node
        found[out] = RopeFixed(site, frozenset(inner))
    gone = {n for m in found.values() for n in m.nodes}
    return found, gone


def emit_rope_fixed(cv: Converter, m: RopeFixed) -> str:
    """One opaque node reading the rotated tensor (its tables are fixed data). Its input is
    named explicitly: the site's output reads only swallowed nodes."""
    out = m.site.out
    if m.site.x not in cv.name:  # the rotated tensor is fixed data itself
        return cv.opaque(out)
    return cv.emit(out, f"@{out.name}", "opaque", [cv.name[m.site.x]])


register_pattern("rope_fixed", find_rope_fixed, emit_rope_fixed, yields=True)
