"""Joint alignment of many models: one permutation per model into a common unit order.

Aligning every model to one *reference* (Git Re-Basin's two-model recipe applied N − 1 times)
makes each model agree with the reference, not with the others. Joint alignment instead
maximises the agreement of all pairs at once,

    J(P_1, …, P_N) = Σ_{i<j} ⟨P_i θ_i, P_j θ_j⟩,

by coordinate ascent over the models: Git Re-Basin's MergeMany (Ainsworth, Hayase, Srinivasa,
"Git Re-Basin", ICLR 2023, Algorithm 3). In each round every model ``i`` in a seeded random
order is re-aligned by weight matching to the mean of the *others*, ``(1/(N−1)) Σ_{j≠i} P_j θ_j``,
which changes ``J`` by ``(N − 1)`` times the change of that matching objective; a new
permutation is kept only if it improves it, so ``J`` never decreases. Rounds stop when a round
changes no permutation. One permutation per model into a shared frame is cycle-consistent by
construction: model ``i`` is moved onto model ``j`` by ``P_j⁻¹ P_i``. Sharma et al. (ICML 2024,
"Simultaneous Linear Connectivity of Neural Networks Modulo Permutation") use such jointly
aligned networks to test *strong* linear connectivity.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from symlab.align.alignment import Alignment
from symlab.align.weight_matching import AlignmentError, weight_matching
from symlab.seeding import generator
from symlab.symmetry.group import SymmetryGroup

__all__ = ["JointAlignment", "joint_alignment"]

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True, eq=False)
class JointAlignment:
    """Each model's permutation into a common unit order, and the joint objective.

    Attributes:
        alignments: ``alignments[m]`` moves model ``m`` into the common order.
        objective: ``Σ_{i<j} ⟨P_i θ_i, P_j θ_j⟩`` over the parameters the permutations move.
        trace: the objective at the start and after every round (never decreasing).
        rounds: rounds run (the last one changed nothing if ``converged``).
        converged: a round changed no permutation before ``max_rounds``.
        changes: permutations changed in each round.

    >>> import symlab as sl
    >>> models = [sl.nn.MLP([3, 6, 2], seed=s) for s in range(3)]
    >>> ja = joint_alignment([m.state_dict() for m in models], sl.symmetries(models[0]))
    >>> len(ja.alignments), ja.trace == sorted(ja.trace), ja.converged
    (3, True, True)
    """

    alignments: list[Alignment]
    objective: float
    trace: list[float]
    rounds: int
    converged: bool
    changes: list[int] = field(default_factory=list)

    def apply(self, state_dicts: Sequence[StateDict]) -> list[OrderedDict[str, torch.Tensor]]:
        """Every state_dict moved into the common unit order."""
        if len(state_dicts) != len(self.alignments):
            raise AlignmentError(
                f"got {len(state_dicts)} state_dicts for {len(self.alignments)} alignments"
            )
        return [al.apply(sd) for al, sd in zip(self.alignments, state_dicts, strict=True)]

    def apply_models(self, models: Sequence[nn.Module]) -> list[nn.Module]:
        """Copies of ``models`` with their parameters moved into the common unit order."""
        out = []
        for sd, m in zip(self.apply([m.state_dict() for m in models]), models, strict=True):
            c = copy.deepcopy(m)
            c.load_state_dict(sd)
            out.append(c)
        return out


def _moved_keys(G: SymmetryGroup) -> list[str]:
    return sorted({p for axes in G.permutation_spec().values() for p, _ in axes})


def _pair_objective(aligned: Sequence[StateDict], keys: Sequence[str]) -> float:
    """``Σ_{i<j} ⟨θ_i, θ_j⟩ = ½ (‖Σ θ_i‖² − Σ ‖θ_i‖²)`` over ``keys``, in float64."""
    total = 0.0
    for k in keys:
        ts = [sd[k].detach().double() for sd in aligned]
        s = sum(ts)
        total += 0.5 * (float((s * s).sum()) - sum(float((t * t).sum()) for t in ts))
    return total


def _mean_of_others(aligned: Sequence[StateDict], i: int) -> dict[str, torch.Tensor]:
    n = len(aligned)
    out = {}
    for k, v in aligned[i].items():
        if v.is_floating_point():
            others = [aligned[j][k].double() for j in range(n) if j != i]
            out[k] = sum(others) / (n - 1)  # float64: the ascent is judged exactly
        else:
            out[k] = v
    return out


def joint_alignment(
    state_dicts: Sequence[StateDict],
    G: SymmetryGroup,
    *,
    init: Literal["reference", "identity"] = "reference",
    reference: int = 0,
    seed: int = 0,
    max_rounds: int = 50,
) -> JointAlignment:
    """Align ``state_dicts`` jointly by MergeMany coordinate ascent (see the module docstring).

    Args:
        state_dicts: two or more state_dicts of ``G``'s architecture.
        G: their symmetry group.
        init: ``"reference"`` starts from weight matching of every model to
            ``state_dicts[reference]`` (so the result is never worse than reference alignment
            on the joint objective); ``"identity"`` starts from the models as they are
            (Ainsworth et al.'s MergeMany).
        seed: seeds the visiting order of the models and weight matching's.
        max_rounds: cap on the rounds.

    Returns:
        a :class:`JointAlignment`.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 8, 8, 2], seed=0); G = sl.symmetries(net); sd = net.state_dict()
    >>> def shuffle(s):  # a random permutation of every hidden layer
    ...     g = torch.Generator().manual_seed(s)
    ...     return G.element({f.name: torch.randperm(int(f.size), generator=g)
    ...                       for f in G.factors if f.kind == "permutation"})
    >>> triple = [G.act(shuffle(s), sd) for s in range(3)]
    >>> a, b, c = joint_alignment(triple, G).apply(triple)
    >>> all(torch.allclose(a[k], b[k]) and torch.allclose(a[k], c[k]) for k in a)
    True
    """
    n = len(state_dicts)
    if n < 2:
        raise AlignmentError(f"joint alignment needs at least two state_dicts, got {n}")
    if init not in ("reference", "identity"):
        raise AlignmentError(f"init must be 'reference' or 'identity', got {init!r}")
    if not 0 <= reference < n:
        raise AlignmentError(f"reference must be in [0, {n}), got {reference}")
    if max_rounds < 1:
        raise AlignmentError(f"max_rounds must be >= 1, got {max_rounds}")
    for sd in state_dicts:
        G.check_state_dict(sd)
    keys = _moved_keys(G)
    sds = list(state_dicts)
    if init == "reference":
        als = [weight_matching(sds[reference], sd, G, seed=seed) for sd in sds]
    else:
        ident = {f: p for f, p in G.identity().values.items() if f in G.permutation_spec()}
        als = [Alignment.from_perms(G, ident, 0.0, method="identity") for _ in sds]
    aligned = [al.apply(sd) for al, sd in zip(als, sds, strict=True)]
    trace = [_pair_objective(aligned, keys)]
    changes: list[int] = []
    gen = generator(seed, 1)
    converged = False
    for rnd in range(max_rounds):
        changed = 0
        for i in torch.randperm(n, generator=gen).tolist():
            target = _mean_of_others(aligned, i)
            new = weight_matching(target, sds[i], G, seed=seed + 1 + rnd, init=als[i])
            if new.objective <= new.trace[0] + 1e-12 * max(1.0, abs(new.trace[0])):
                continue  # not better for the joint objective: keep the old permutation
            if any(not torch.equal(new.perms[f], als[i].perms[f]) for f in new.perms):
                changed += 1
                als[i] = new
                aligned[i] = new.apply(sds[i])
        trace.append(_pair_objective(aligned, keys))
        changes.append(changed)
        if changed == 0:
            converged = True
            break
    final = [
        Alignment.from_perms(
            G,
            al.perms,
            al.objective,
            al.trace,
            "joint_alignment",
            {"init": init, "rounds": len(changes)},
        )
        for al in als
    ]
    return JointAlignment(final, trace[-1], trace, len(changes), converged, changes)
