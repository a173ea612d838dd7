"""Diff two permutation specs: missing, extra and mis-tied axes, matching permutations by the
axes they move (their names may differ), for comparing a derived spec with a hand-written one
(git-re-basin's own ResNet-50 spec had such a typo)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from symlab.symmetry.spec_io import Axis, PermutationSpec

__all__ = ["MisTie", "SpecDiff", "diff"]


# -- diff -------------------------------------------------------------------------------------


def _fmt(ax: Axis) -> str:
    return f"{ax[0]} axis {ax[1]}"


@dataclass(frozen=True)
class MisTie:
    """Axes that one spec ties in ``perm`` but the other spec splits across ``parts``.

    ``parts`` lists, per permutation of the other spec, the axes of ``perm`` it holds (axes
    that only one spec permutes are reported as missing/extra instead).
    """

    spec: str
    perm: str
    other: str
    parts: tuple[tuple[str, tuple[Axis, ...]], ...]

    @property
    def axes(self) -> frozenset[Axis]:
        return frozenset(ax for _, axes in self.parts for ax in axes)

    def __str__(self) -> str:
        parts = "; ".join(f"{q}: {', '.join(map(_fmt, axes))}" for q, axes in self.parts)
        return (
            f"{self.spec} {self.perm} ties axes that the {self.other} spec puts in "
            f"{len(self.parts)} permutations ({parts})"
        )


@dataclass(frozen=True)
class SpecDiff:
    """The differences of two permutation specs, up to renaming of permutations.

    ``missing``: axes only the first (derived) spec permutes; ``extra``: axes only the second
    (hand-written) spec permutes; ``mistied``: permutations whose shared axes the other spec
    ties differently; ``renaming``: first-spec perm → second-spec perm where they correspond.
    """

    missing: tuple[Axis, ...]
    extra: tuple[Axis, ...]
    mistied: tuple[MisTie, ...]
    renaming: Mapping[str, str]
    names: tuple[str, str] = ("derived", "hand-written")

    @property
    def ok(self) -> bool:
        """True when the specs are identical up to the names of the permutations."""
        return not (self.missing or self.extra or self.mistied)

    @property
    def mistied_axes(self) -> frozenset[Axis]:
        """Every axis involved in a mis-tie."""
        return frozenset(ax for m in self.mistied for ax in m.axes)

    def __str__(self) -> str:
        first, second = self.names
        if self.ok:
            return f"the specs agree up to renaming ({len(self.renaming)} permutations)"
        lines = [
            f"spec diff: {len(self.missing)} missing, {len(self.extra)} extra, "
            f"{len(self.mistied)} mis-tied"
        ]
        if self.missing:
            lines.append(f"missing (permuted in the {first} spec only):")
            lines += [f"  {_fmt(ax)}" for ax in self.missing]
        if self.extra:
            lines.append(f"extra (permuted in the {second} spec only):")
            lines += [f"  {_fmt(ax)}" for ax in self.extra]
        if self.mistied:
            lines.append("mis-tied:")
            lines += [f"  {m}" for m in self.mistied]
        return "\n".join(lines)


def _mistie(
    spec: PermutationSpec, other: PermutationSpec, common: frozenset[Axis], names: tuple[str, str]
) -> tuple[list[MisTie], dict[str, str]]:
    """Mis-ties of ``spec``'s perms against ``other``, and perms that map to one perm there."""
    found, single = [], {}
    for perm, axes in spec.perm_to_axes.items():
        parts: dict[str, list[Axis]] = {}
        for ax in axes:
            if ax in common:
                parts.setdefault(other._owner[ax], []).append(ax)
        if len(parts) > 1:
            split = tuple((q, tuple(v)) for q, v in parts.items())
            found.append(MisTie(names[0], perm, names[1], split))
        elif parts:
            single[perm] = next(iter(parts))
    return found, single


def diff(
    derived: Any,
    handwritten: Any,
    *,
    ignore: Callable[[str], bool] | Iterable[str] | None = None,
    names: tuple[str, str] = ("derived", "hand-written"),
) -> SpecDiff:
    """Compare two permutation specs, matching permutations by the axes they move.

    Both arguments go through :meth:`PermutationSpec.coerce` (a group, a spec, git-re-basin's
    named tuple, or either dict). ``ignore`` drops parameters from both specs (a predicate or a
    collection of names), e.g. BatchNorm running statistics that one side leaves out.

    >>> a = {"P0": [("w1", 0), ("w2", 1)], "P1": [("w2", 0), ("w3", 1)]}
    >>> b = {"Q": [("w1", 0), ("w2", 1), ("w2", 0)], "R": [("w3", 1)]}  # w2's rows tied wrongly
    >>> d = diff(a, b)
    >>> d.ok, sorted(m.perm for m in d.mistied)
    (False, ['P1', 'Q'])
    """
    a, b = PermutationSpec.coerce(derived), PermutationSpec.coerce(handwritten)
    if ignore is not None:
        skip = ignore if callable(ignore) else frozenset(ignore).__contains__
        a, b = (_drop(s, skip) for s in (a, b))
    common = a.axes & b.axes
    missing = tuple(ax for axes in a.perm_to_axes.values() for ax in axes if ax not in common)
    extra = tuple(ax for axes in b.perm_to_axes.values() for ax in axes if ax not in common)
    ties_a, single_a = _mistie(a, b, common, names)
    ties_b, single_b = _mistie(b, a, common, (names[1], names[0]))
    renaming = {p: q for p, q in single_a.items() if single_b.get(q) == p}
    return SpecDiff(missing, extra, tuple(ties_a + ties_b), MappingProxyType(renaming), names)


def _drop(spec: PermutationSpec, skip: Callable[[str], bool]) -> PermutationSpec:
    p2a = {p: [ax for ax in axes if not skip(ax[0])] for p, axes in spec.perm_to_axes.items()}
    return PermutationSpec.from_perm_to_axes({p: axes for p, axes in p2a.items() if axes})
