"""The pattern registry: multi-node idioms of real code recognised as one graph op.

A pattern finds its matches in a torch.fx graph with shapes before the converter reads it node
by node, and emits one graph node per match (the nodes it swallows are skipped). One entry per
pattern, like the op rules of :mod:`symlab.symmetry.rules`: adding a pattern never touches the
converter. Patterns must not overlap; a node claimed by two is a bug the converter refuses,
unless the later one *yields* (its overlapping matches are dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch.fx as fx

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["Pattern", "patterns", "register_pattern"]

#: ``find(gm) -> ({node the match is emitted at: match}, {nodes the matches swallow})``
FindFn = Callable[[fx.GraphModule], tuple[dict[fx.Node, Any], set[fx.Node]]]
#: ``emit(converter, match) -> graph node name``
EmitFn = Callable[["Converter", Any], str]


@dataclass(frozen=True)
class Pattern:
    """A registered pattern: ``find`` its matches in a graph module, ``emit`` one of them.

    >>> sorted(p.name for p in patterns())[:4]
    ['attention', 'conv1d', 'norm', 'normalize']
    """

    name: str
    find: FindFn
    emit: EmitFn
    yields: bool = False  # a match touching nodes an earlier pattern took is dropped


_PATTERNS: dict[str, Pattern] = {}


def register_pattern(
    name: str, find: FindFn, emit: EmitFn, *, replace: bool = False, yields: bool = False
) -> Pattern:
    """Register a pattern under ``name`` (``replace=True`` to override an existing one).

    ``yields=True``: the pattern's matches (objects with a ``nodes`` attribute, the nodes
    they swallow) give way to earlier patterns that took any of their nodes — a ``Conv1D``
    inside attention is read by the attention pattern, one elsewhere by its own.

    >>> p = register_pattern("doctest_nothing", lambda gm: ({}, set()), lambda cv, m: "")
    >>> "doctest_nothing" in [q.name for q in patterns()]
    True
    >>> _ = _PATTERNS.pop("doctest_nothing")
    """
    if name in _PATTERNS and not replace:
        raise ValueError(f"pattern {name!r} is already registered; pass replace=True")
    entry = Pattern(name, find, emit, yields)
    _PATTERNS[name] = entry
    return entry


def patterns() -> list[Pattern]:
    """The registered patterns, in registration order."""
    return list(_PATTERNS.values())
