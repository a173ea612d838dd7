"""Factors of a derived symmetry group and group elements."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from symlab.graph.widths import Width
from symlab.perf import lazy_import

sp = lazy_import("sympy")  # loaded on first use: ``import symlab`` stays cheap

__all__ = ["Factor", "FactorKind", "GroupElement"]

FactorKind = Literal[
    "permutation",
    "scaling",
    "common_scaling",
    "sign",
    "common_sign",
    "flip",
    "GL",
    "complex_scaling",
    "translation",
]

_DISCRETE = {"permutation", "sign", "common_sign", "flip"}


@dataclass(frozen=True)
class Factor:
    """One factor of the direct product.

    Attributes:
        name: e.g. ``"P[layers.0.linear]"`` (permutation of the space first produced there).
        kind: ``permutation`` (S_n, or a product of S_k over ``blocks``), ``scaling``
            (positive diagonal, R_{>0}^n), ``common_scaling`` (one positive scalar),
            ``sign`` (±1 per unit), ``common_sign`` (one ±1), ``flip`` (sigmoid flips
            σ(-z) = 1 - σ(z), compensated by the next bias), ``GL`` (any invertible matrix),
            ``translation`` (``θ ↦ θ + E t``, ``t ∈ R^n``: softmax shifts, attention key biases),
            ``complex_scaling`` (one non-zero complex number ``a + bi`` per pair of units, acting
            on the pair as ``aI + bJ``: what survives of GL on rotary query/key pairs).
            Internal permutation factors with ``copies > 1`` are independent permutations of
            ``size`` items per copy (query heads within each key/value group).
        size: number of units acted on (int or sympy expression).
        space: the tensor that names the space (permutation) or segment (the others).
        axes: the ``(state_dict key, axis)`` pairs this factor moves.
        blocks: for permutations restricted by fixed data, the blocks of interchangeable units.
        copies: for GL, complex-scaling and permutation factors inside an op, the number of
            independent copies (heads, or key/value groups).
        internal: the factor lives inside one op (attention heads), not on a graph tensor.
        exact: False when the invariance holds only up to a normalisation's ``eps``.
        note: why the factor is inexact, or other caveats.

    >>> import symlab as sl
    >>> f = sl.symmetries(sl.nn.MLP([3, 4, 2])).factors[0]
    >>> f.name, f.kind, f.size, f.space
    ('P[layers.0.linear]', 'permutation', 4, 'layers.0.linear')
    >>> f.axes
    (('layers.0.linear.weight', 0), ('layers.0.linear.bias', 0), ('head.weight', 1))
    """

    name: str
    kind: FactorKind
    size: Width
    space: str
    axes: tuple[tuple[str, int], ...] = ()
    blocks: tuple[tuple[int, ...], ...] | None = None
    exact: bool = True
    note: str = ""
    copies: int = 1
    internal: bool = False

    @property
    def discrete(self) -> bool:
        return self.kind in _DISCRETE

    @property
    def order(self) -> sp.Expr:
        """Order of the finite part (1 for continuous factors)."""
        n = sp.sympify(self.size)
        if self.kind == "permutation":
            if self.blocks is not None:
                return sp.Mul(*[sp.factorial(len(b)) for b in self.blocks])
            return sp.factorial(n) ** self.copies
        if self.kind in ("sign", "flip"):
            return sp.Integer(2) ** n
        if self.kind == "common_sign":
            return sp.Integer(2)
        return sp.Integer(1)

    @property
    def log10_order(self) -> float:
        if self.kind == "permutation":
            sizes = [len(b) for b in self.blocks] if self.blocks else [int(self.size)] * self.copies
            return sum(math.lgamma(k + 1) for k in sizes) / math.log(10)
        if self.kind in ("sign", "flip"):
            return int(self.size) * math.log10(2)
        if self.kind == "common_sign":
            return math.log10(2)
        return 0.0

    @property
    def dimension(self) -> Width:
        """Dimension of the continuous part (0 for discrete factors)."""
        n = self.size
        dims = {"scaling": n, "common_scaling": 1, "GL": self.copies * n * n, "translation": n,
                "complex_scaling": 2 * self.copies * n}  # fmt: skip
        return dims.get(self.kind, 0)

    def latex(self) -> str:
        n = sp.latex(sp.sympify(self.size))
        if self.kind == "permutation":
            if self.blocks is not None:
                return r" \times ".join(f"S_{{{len(b)}}}" for b in self.blocks if len(b) > 1)
            return f"S_{{{n}}}" + (f"^{{{self.copies}}}" if self.copies > 1 else "")
        return {
            "scaling": rf"\mathbb{{R}}_{{>0}}^{{{n}}}",
            "common_scaling": r"\mathbb{R}_{>0}",
            "sign": rf"\{{\pm 1\}}^{{{n}}}",
            "flip": rf"\mathbb{{Z}}_2^{{{n}}}",
            "common_sign": r"\{\pm 1\}",
            "GL": f"GL_{{{n}}}" + (f"^{{{self.copies}}}" if self.copies > 1 else ""),
            "complex_scaling": rf"(\mathbb{{C}}^*)^{{{n}}}"
            + (f"^{{{self.copies}}}" if self.copies > 1 else ""),
            "translation": rf"(\mathbb{{R}}^{{{n}}}, +)",
        }[self.kind]

    def short(self) -> str:
        n = self.size
        if self.kind == "permutation" and self.blocks is not None:
            return " × ".join(f"S_{len(b)}" for b in self.blocks if len(b) > 1)
        return {
            "permutation": f"S_{n}" + (f"^{self.copies}" if self.copies > 1 else ""),
            "scaling": f"R_{{>0}}^{n}",
            "common_scaling": "R_{>0}",
            "sign": f"{{±1}}^{n}",
            "flip": f"Z2^{n}(flip)",
            "common_sign": "{±1}",
            "GL": f"GL_{n}" + (f"^{self.copies}" if self.copies > 1 else ""),
            "complex_scaling": f"(C*^{n})" + (f"^{self.copies}" if self.copies > 1 else ""),
            "translation": f"(R^{n},+)",
        }[self.kind]


@dataclass(frozen=True)
class GroupElement:
    """An element of a :class:`SymmetryGroup`: one value per factor name.

    Permutations are index tensors (``perm[i]`` = old index of new unit ``i``); scalings and
    signs are vectors (or scalars for the common kinds); GL factors are matrices; translations
    are vectors of their coordinates.

    >>> import symlab as sl
    >>> G = sl.symmetries(sl.nn.MLP([3, 4, 2]))
    >>> h = G.element({"P[layers.0.linear]": torch.tensor([1, 0, 3, 2])})
    >>> h.values["P[layers.0.linear]"].tolist(), h.values["scale[layers.0.linear]"].tolist()
    ([1, 0, 3, 2], [1.0, 1.0, 1.0, 1.0])
    >>> G.compose(h, G.inverse(h)).values["P[layers.0.linear]"].tolist()
    [0, 1, 2, 3]
    """

    signature: tuple[tuple[str, str, str], ...]
    values: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values[name]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.values.items())
        return f"GroupElement({parts})"
