"""What a rule says about one op: ties, admitted transformations, fixed data.

A symmetry element assigns to every tensor ``t`` of the graph an invertible map of its feature
axis, ``x ↦ A_t x + c_t`` with ``A_t = M_t P_t``: ``P_t`` a permutation, ``M_t`` a diagonal
(magnitude × sign) or a full matrix (GL), ``c_t`` a shift (only for sigmoid flips). Tensors *tied*
by an op share ``P`` and ``M``; tensors only *permutation-tied* share ``P``. Each op says which
forms of ``M`` it admits on each tensor it touches (:class:`Admits`); a tensor's group is the
intersection of what every op touching it admits (Godfrey et al. 2022, intertwiner groups).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import torch

from symlab.graph.widths import Width

__all__ = [
    "ANY",
    "NONE",
    "Admits",
    "FixedData",
    "InternalFactor",
    "Mag",
    "OpSymmetry",
    "Sign",
    "Translation",
]


class Mag(IntEnum):
    """Magnitude part of ``M``: from nothing to a full invertible matrix.

    >>> Mag.DIAG < Mag.GL, Mag(min(Mag.DIAG, Mag.COMMON)).name
    (True, 'COMMON')
    """

    NONE = 0
    COMMON = 1  # one positive scalar for all units
    DIAG = 2  # a positive scalar per unit
    GL = 3  # any invertible matrix (contains signs and permutations)


class Sign(IntEnum):
    """Sign part of ``M``.

    >>> Sign.DIAG > Sign.COMMON > Sign.NONE
    True
    """

    NONE = 0
    COMMON = 1  # one sign for all units
    DIAG = 2  # a sign per unit


@dataclass(frozen=True)
class Admits:
    """The forms of ``M`` an op admits on a tensor; ``a & b`` is their intersection.

    >>> relu = Admits(Mag.DIAG, Sign.NONE)  # positive scaling per unit, no sign flips
    >>> ANY & relu
    Admits(mag=<Mag.DIAG: 2>, sign=<Sign.NONE: 0>)
    >>> (relu & NONE) == NONE
    True
    """

    mag: Mag = Mag.NONE
    sign: Sign = Sign.NONE

    def __and__(self, other: Admits) -> Admits:
        return Admits(Mag(min(self.mag, other.mag)), Sign(min(self.sign, other.sign)))


ANY = Admits(Mag.GL, Sign.DIAG)
NONE = Admits(Mag.NONE, Sign.NONE)


@dataclass(frozen=True)
class FixedData:
    """Fixed (never moved) data of an op, indexed along feature axes of tensors.

    ``key`` is the ``state_dict`` key holding the values; ``axes[k]`` names the tensor whose
    feature axis dimension ``k`` runs along (or ``None`` for an axis no symmetry touches).
    Units that carry different fixed data are distinguishable; colour refinement uses these to
    shrink the permutation factors.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 4, 2], asym={"num_fixed": 1, "kappa": 1.0})
    >>> graph = sl.symmetries(net).graph; node = graph.node("layers.0.linear")
    >>> fixed = sl.symmetry.get_rule(node).derive(node, graph).fixed_data
    >>> [fd.key for fd in fixed], fixed[0].axes  # rows run along the unit axis, columns the input
    (['layers.0.linear.mask', 'layers.0.linear.fixed'], ('layers.0.linear', 'input'))
    """

    key: str
    axes: tuple[str | None, ...]
    value: torch.Tensor | None = None  # given directly (e.g. GroupNorm's group ids) or None


@dataclass(frozen=True)
class InternalFactor:
    """A symmetry living inside one op, touching no graph tensor (e.g. attention heads).

    ``kind`` is ``"permutation"`` (of ``size`` items; with ``copies > 1``, one per copy,
    re-indexed by the op's first permutation: query heads within key/value groups), ``"GL"``
    (``copies`` independent ``size × size`` matrices, re-indexed by the op's first permutation)
    or ``"complex_scaling"`` (``copies × size`` non-zero complex numbers, one per pair of
    rotary units). The op's action receives the values by ``suffix``.
    """

    suffix: str
    kind: str
    size: int
    copies: int = 1


Params = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Translation:
    """An additive symmetry of one node's own parameters: ``θ ↦ θ + E t`` for every ``t``.

    The softmax shift (a constant added to every logit) and the key bias of attention are of
    this kind. ``embed(t, params)`` returns the update ``E t`` for the node's parameters named
    like the keys of ``params`` (which give shapes and dtype; parameters it does not touch may
    be left out); ``project(update)`` recovers ``t`` from an update of that form. The set of
    updates must be mapped into itself by the node's action under the rest of the group (true
    for every real translation symmetry), which is what composition and inverses rely on.
    """

    suffix: str
    node: str
    size: Width
    embed: Callable[[torch.Tensor, Params], dict[str, torch.Tensor]]
    project: Callable[[Params], torch.Tensor]
    axes: tuple[tuple[str, int], ...] = ()  # (parameter name, axis) pairs it moves
    note: str = ""


@dataclass
class OpSymmetry:
    """A rule's verdict on one node.

    Attributes:
        tie: pairs of tensors that share permutation and ``M`` (elementwise ops, additions).
        tie_perm: pairs that share only the permutation (normalisation in → out).
        admits: ``(tensor, Admits, reason)``; intersected per tied set.
        fixed: tensors whose feature axis may not move at all (network inputs/outputs).
        absorbs_shift: the op can absorb an additive shift of its inputs (a biased linear map).
        composite: ``{tensor: parts}`` when the op's output is the concatenation of ``parts``
            (a block structure, not a space of its own); ``repeat[tensor]`` expands each unit of
            a single part into that many consecutive units (flatten after a convolution).
        out_shift: for flip symmetries (sigmoid), the shift of the output given the output's
            sign vector; consumers must absorb it.
        fixed_data: data that tells units apart (asymmetric masks, fixed gates).
        internal: symmetries inside the op (attention heads), see :class:`InternalFactor`.
        translations: additive symmetries of parameters (softmax shifts), see
            :class:`Translation`.
        inexact: a note when the admitted scalings hold only up to a norm's ``eps``.

    >>> import symlab as sl
    >>> graph = sl.symmetries(sl.nn.MLP([3, 4, 2])).graph; node = graph.node("layers.0.act")
    >>> verdict = sl.symmetry.get_rule(node).derive(node, graph)  # ReLU
    >>> verdict.tie, verdict.admits[0][1], verdict.absorbs_shift
    ([('layers.0.linear', 'layers.0.act')], Admits(mag=<Mag.DIAG: 2>, sign=<Sign.NONE: 0>), False)
    """

    tie: list[tuple[str, str]] = field(default_factory=list)
    tie_perm: list[tuple[str, str]] = field(default_factory=list)
    admits: list[tuple[str, Admits, str]] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    absorbs_shift: bool = False
    composite: dict[str, list[str]] = field(default_factory=dict)
    repeat: dict[str, int] = field(default_factory=dict)
    out_shift: Callable[[torch.Tensor], torch.Tensor] | None = None
    fixed_data: list[FixedData] = field(default_factory=list)
    internal: list[InternalFactor] = field(default_factory=list)
    translations: list[Translation] = field(default_factory=list)
    inexact: str | None = None
