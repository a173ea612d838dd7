"""Permutation specs in git-re-basin's format: export, import, JSON, and a diff.

Git Re-Basin (Ainsworth, Hayase, Srinivasa, ICLR 2023) describes a network's permutation symmetry
by a ``PermutationSpec(perm_to_axes, axes_to_perm)``: ``perm_to_axes`` maps each permutation name
to the ``(param, axis)`` pairs it moves, ``axes_to_perm`` maps each parameter to a tuple with,
per axis, the name of the permutation acting on it or ``None``. Hand-written specs are easy to get
wrong (git-re-basin's own ResNet-50 spec had a typo); :func:`diff` compares a spec symlab derived
with a hand-written one, matching permutations by the axes they move (names may differ).

>>> import symlab as sl
>>> spec = export(sl.symmetries(sl.graph.mlp([3, 4, 2])))
>>> spec.to_axes_to_perm()["layers.0.linear.weight"]
('P[layers.0.linear]', None)
>>> from symlab.symmetry.spec_diff import diff
>>> hand = {"P_0": [("layers.0.linear.weight", 0), ("layers.0.linear.bias", 0),
...                 ("head.weight", 1)]}
>>> diff(spec, hand).ok
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from types import MappingProxyType
from typing import Any

from symlab.errors import SymlabError

__all__ = [
    "Axis",
    "PermutationSpec",
    "SpecError",
    "export",
    "from_axes_to_perm",
    "from_perm_to_axes",
    "load_json",
    "save_json",
]

Axis = tuple[str, int]
#: Per parameter: a tensor (or anything with ``.shape``), a sequence of sizes, or its ndim.
Shapes = Mapping[str, Any]

_FORMAT = "git-re-basin PermutationSpec"


class SpecError(SymlabError):
    """A permutation spec is malformed or inconsistent (names the param and axis at fault)."""


# -- validation helpers -----------------------------------------------------------------------


def _seq(value: Any, what: str) -> tuple[Any, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise SpecError(what)
    return tuple(value)


def _axis(entry: Any, perm: str) -> Axis:
    pair = _seq(entry, f"permutation {perm!r}: entry {entry!r} is not a (param, axis) pair")
    if len(pair) != 2:
        raise SpecError(f"permutation {perm!r}: entry {entry!r} is not a (param, axis) pair")
    param, axis = pair
    if not isinstance(param, str):
        raise SpecError(f"permutation {perm!r}: parameter name {param!r} is not a string")
    if isinstance(axis, bool) or not hasattr(axis, "__index__") or int(axis) < 0:
        raise SpecError(f"permutation {perm!r}: axis {axis!r} of {param!r} is not an int >= 0")
    return param, int(axis)


def _shape(value: Any, param: str) -> tuple[int | None, ...]:
    """Per-axis sizes (None where unknown, e.g. symbolic) of a ``shapes`` entry."""
    if hasattr(value, "shape"):
        value = tuple(value.shape)
    if isinstance(value, int) and not isinstance(value, bool):
        return (None,) * value
    sizes = _seq(value, f"shape of {param!r} must be a tensor, a sequence of sizes or an ndim")
    return tuple(int(n) if isinstance(n, int) or getattr(n, "is_Integer", False) else None
                 for n in sizes)  # fmt: skip


def _mapping(value: Any, what: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{what} must be a mapping, got {type(value).__name__}")
    return value


# -- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PermutationSpec:
    """git-re-basin's ``PermutationSpec``: ``perm_to_axes`` and ``axes_to_perm``, kept consistent.

    Build one with :meth:`from_perm_to_axes`, :meth:`from_axes_to_perm`, :meth:`coerce` or
    :func:`export`; construction checks that the two mappings describe the same relation and
    names the first param/axis where they do not. Equality ignores the order in which a
    permutation lists its axes.
    """

    perm_to_axes: Mapping[str, tuple[Axis, ...]]
    axes_to_perm: Mapping[str, tuple[str | None, ...]]
    _owner: Mapping[Axis, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p2a: dict[str, tuple[Axis, ...]] = {}
        owner: dict[Axis, str] = {}
        for perm, axes in _mapping(self.perm_to_axes, "perm_to_axes").items():
            if not isinstance(perm, str):
                raise SpecError(f"permutation name {perm!r} is not a string")
            what = f"perm_to_axes[{perm!r}] must be a list of (param, axis) pairs"
            p2a[perm] = tuple(_axis(entry, perm) for entry in _seq(axes, what))
            if not p2a[perm]:
                raise SpecError(f"permutation {perm!r} moves no axis")
            for param, axis in p2a[perm]:
                if (param, axis) in owner:
                    other = owner[(param, axis)]
                    where = "twice in" if other == perm else f"in both {other!r} and"
                    raise SpecError(f"axis {axis} of {param!r} is listed {where} {perm!r}")
                owner[(param, axis)] = perm
        a2p: dict[str, tuple[str | None, ...]] = {}
        for param, row in _mapping(self.axes_to_perm, "axes_to_perm").items():
            if not isinstance(param, str):
                raise SpecError(f"parameter name {param!r} is not a string")
            a2p[param] = _seq(row, f"axes_to_perm[{param!r}] must be a tuple of names or None")
            for axis, perm in enumerate(a2p[param]):
                if owner.get((param, axis)) != perm:
                    raise SpecError(
                        f"axes_to_perm[{param!r}][{axis}] is {perm!r} but perm_to_axes puts "
                        f"axis {axis} of {param!r} in {owner.get((param, axis))!r}"
                    )
        for (param, axis), perm in owner.items():
            if axis >= len(a2p.get(param, ())):
                raise SpecError(
                    f"{perm!r} moves axis {axis} of {param!r}, which axes_to_perm lacks"
                )
        object.__setattr__(self, "perm_to_axes", MappingProxyType(p2a))
        object.__setattr__(self, "axes_to_perm", MappingProxyType(a2p))
        object.__setattr__(self, "_owner", MappingProxyType(owner))

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_perm_to_axes(
        cls, perm_to_axes: Mapping[str, Iterable[Any]], shapes: Shapes | None = None
    ) -> PermutationSpec:
        """From ``{perm: [(param, axis), ...]}`` (what ``G.permutation_spec()`` returns).

        Without ``shapes`` each parameter's tuple in ``axes_to_perm`` ends at its last permuted
        axis and unpermuted parameters are absent; with ``shapes`` (a ``state_dict`` works)
        every parameter is listed with all its axes, and sizes are checked.
        """
        owner: dict[Axis, str] = {}
        for perm, axes in _mapping(perm_to_axes, "perm_to_axes").items():
            what = f"perm_to_axes[{perm!r}] must be a list of (param, axis) pairs"
            for entry in _seq(axes, what):
                owner.setdefault(_axis(entry, str(perm)), perm)
        ndim: dict[str, int] = {}
        for param, axis in owner:
            ndim[param] = max(ndim.get(param, 0), axis + 1)
        a2p = {p: tuple(owner.get((p, i)) for i in range(n)) for p, n in ndim.items()}
        return cls(perm_to_axes, a2p)._with_shapes(shapes)

    @classmethod
    def from_axes_to_perm(
        cls, axes_to_perm: Mapping[str, Iterable[str | None]], shapes: Shapes | None = None
    ) -> PermutationSpec:
        """From ``{param: (perm name or None, per axis)}`` (git-re-basin's ``axes_to_perm``).

        ``shapes`` checks dimensions and sizes and adds the parameters it lists that
        ``axes_to_perm`` lacks (with all axes unpermuted).
        """
        p2a: dict[str, list[Axis]] = {}
        for param, row in _mapping(axes_to_perm, "axes_to_perm").items():
            what = f"axes_to_perm[{param!r}] must be a tuple of names or None"
            for axis, perm in enumerate(_seq(row, what)):
                if perm is not None and not isinstance(perm, str):
                    raise SpecError(f"axes_to_perm[{param!r}][{axis}] is {perm!r}, not a name")
                if perm is not None:
                    p2a.setdefault(perm, []).append((str(param), axis))
        return cls(p2a, axes_to_perm)._with_shapes(shapes)

    def _with_shapes(self, shapes: Shapes | None) -> PermutationSpec:
        """Check ndims and per-permutation sizes; list every parameter of ``shapes``."""
        if shapes is None:
            return self
        sizes = {k: _shape(v, k) for k, v in _mapping(shapes, "shapes").items()}
        for param, row in self.axes_to_perm.items():
            if param not in sizes:
                raise SpecError(f"the spec names {param!r}, which is not among the shapes")
            if len(row) > len(sizes[param]):
                raise SpecError(
                    f"axes_to_perm[{param!r}] has {len(row)} entries but {param!r} has "
                    f"{len(sizes[param])} dimension(s)"
                )
        for perm, axes in self.perm_to_axes.items():
            known = [(ax, sizes[ax[0]][ax[1]]) for ax in axes if sizes[ax[0]][ax[1]] is not None]
            for (param, axis), n in known[1:]:
                if n != known[0][1]:
                    (p0, a0), n0 = known[0]
                    raise SpecError(
                        f"permutation {perm!r} moves axes of different sizes: axis {axis} of "
                        f"{param!r} has {n}, axis {a0} of {p0!r} has {n0}"
                    )
        a2p = {k: tuple(self.axes_to_perm.get(k, ())) for k in sizes}
        a2p = {k: row + (None,) * (len(sizes[k]) - len(row)) for k, row in a2p.items()}
        return PermutationSpec(self.perm_to_axes, a2p)

    @classmethod
    def coerce(cls, spec: Any) -> PermutationSpec:
        """A spec from whatever describes one: a :class:`PermutationSpec`, a symmetry group
        (anything with ``permutation_spec()``), git-re-basin's ``PermutationSpec`` named tuple,
        or a ``perm_to_axes`` / ``axes_to_perm`` dict (told apart by their values)."""
        if isinstance(spec, PermutationSpec):
            return spec
        if callable(getattr(spec, "permutation_spec", None)):
            return export(spec)
        if hasattr(spec, "axes_to_perm") and hasattr(spec, "perm_to_axes"):
            out = cls.from_axes_to_perm(spec.axes_to_perm)
            given = cls.from_perm_to_axes(spec.perm_to_axes)
            if given._relation() != out._relation():
                raise SpecError("the spec's perm_to_axes and axes_to_perm disagree")
            return out
        if not isinstance(spec, Mapping):
            raise SpecError(f"cannot read a permutation spec from {type(spec).__name__}")
        for value in spec.values():
            items = list(value) if isinstance(value, Iterable) else [value]
            if any(isinstance(v, str) for v in items):
                return cls.from_axes_to_perm(spec)
            if any(isinstance(v, tuple | list) for v in items):
                return cls.from_perm_to_axes(spec)
        return cls.from_axes_to_perm(spec)  # empty, or only unpermuted parameters

    # -- views --------------------------------------------------------------------------------
    def to_perm_to_axes(self) -> dict[str, list[Axis]]:
        """git-re-basin's ``perm_to_axes`` as a fresh dict of lists."""
        return {p: list(axes) for p, axes in self.perm_to_axes.items()}

    def to_axes_to_perm(self) -> dict[str, tuple[str | None, ...]]:
        """git-re-basin's ``axes_to_perm`` as a fresh dict."""
        return dict(self.axes_to_perm)

    @property
    def axes(self) -> frozenset[Axis]:
        """Every permuted ``(param, axis)``."""
        return frozenset(self._owner)

    def perm_of(self, param: str, axis: int) -> str | None:
        """The permutation moving ``axis`` of ``param`` (None when unpermuted)."""
        return self._owner.get((param, axis))

    def _relation(self) -> dict[str, frozenset[Axis]]:
        return {p: frozenset(axes) for p, axes in self.perm_to_axes.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PermutationSpec):
            return NotImplemented
        return self._relation() == other._relation() and dict(self.axes_to_perm) == dict(
            other.axes_to_perm
        )

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict holding both mappings."""
        return {
            "format": _FORMAT,
            "perm_to_axes": {p: [[k, a] for k, a in axes] for p, axes in self.perm_to_axes.items()},
            "axes_to_perm": {k: list(v) for k, v in self.axes_to_perm.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PermutationSpec:
        """Inverse of :meth:`to_dict` (checks that the two mappings agree)."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise SpecError(f"not a saved permutation spec (expected format {_FORMAT!r})")
        if "perm_to_axes" not in data or "axes_to_perm" not in data:
            raise SpecError("a saved permutation spec needs 'perm_to_axes' and 'axes_to_perm'")
        return cls(data["perm_to_axes"], data["axes_to_perm"])


from_perm_to_axes = PermutationSpec.from_perm_to_axes
from_axes_to_perm = PermutationSpec.from_axes_to_perm


def export(group: Any, shapes: Shapes | None = None) -> PermutationSpec:
    """The permutation spec of a derived group, ``from_perm_to_axes(G.permutation_spec())``.

    ``shapes`` defaults to the group's concrete parameter shapes where it knows them, so that
    ``axes_to_perm`` lists every parameter, as git-re-basin's hand-written specs do.
    """
    if shapes is None:
        graph = getattr(group, "graph", None)
        keys = graph.state_keys() if callable(getattr(graph, "state_keys", None)) else None
        if keys:
            shapes = {k: spec.shape for k, (_node, spec) in keys.items()}
    return PermutationSpec.from_perm_to_axes(group.permutation_spec(), shapes)


def save_json(spec: PermutationSpec, path: str | PathLike[str]) -> None:
    """Write ``spec`` as JSON (both mappings), to share it with git-re-basin-style code or to
    compare it later with :func:`~symlab.symmetry.spec_diff.diff`.

    >>> import pathlib, tempfile, symlab as sl
    >>> spec = export(sl.symmetries(sl.nn.MLP([3, 4, 2])))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "spec.json"
    >>> save_json(spec, path)
    >>> load_json(path) == spec
    True
    """
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec.to_dict(), f, indent=1)


def load_json(path: str | PathLike[str]) -> PermutationSpec:
    """Read a spec written by :func:`save_json` (checks that its two mappings agree; a file
    that is not a saved spec raises :class:`SpecError`).

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "spec.json"
    >>> save_json(from_perm_to_axes({"P": [("fc1.weight", 0), ("fc2.weight", 1)]}), path)
    >>> load_json(path).to_axes_to_perm()
    {'fc1.weight': ('P',), 'fc2.weight': (None, 'P')}
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: not valid JSON ({e})") from e
    return PermutationSpec.from_dict(data)


def __getattr__(name: str) -> Any:
    # diff lives in spec_diff (which imports this module); re-exported lazily
    if name in ("MisTie", "SpecDiff", "diff"):
        from symlab.symmetry import spec_diff

        return getattr(spec_diff, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
