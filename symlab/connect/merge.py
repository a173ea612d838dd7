"""Merging many models: align them to one another, then average.

Two schemes (SCIENCE.md §2): align every model to a common *reference* (Git Re-Basin's
two-model recipe applied N − 1 times), or the *iterative* variant that re-aligns every model to
the running mean until no permutation changes (Ainsworth et al. 2023, MergeMany; Sharma et al.
2024 use it to test strong linear connectivity). Alignment is :func:`weight_matching` over the
derived group; optional REPAIR (Jordan et al. 2023) fixes the merged model's unit statistics.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from symlab.align.alignment import Alignment
from symlab.align.weight_matching import weight_matching
from symlab.connect.interpolate import check_same_architecture
from symlab.connect.repair import repair as _repair
from symlab.symmetry.group import SymmetryGroup

__all__ = ["MergeResult", "average_state_dicts", "merge"]


@dataclass(frozen=True, eq=False)
class MergeResult:
    """A merged model, the alignments that made it, and how many alignment rounds ran.

    >>> import symlab as sl
    >>> models = [sl.nn.MLP([3, 4, 2], seed=s) for s in range(3)]
    >>> result = merge(models, sl.symmetries(models[0]))
    >>> type(result.model).__name__, len(result.alignments), result.rounds >= 1
    ('MLP', 3, True)
    """

    model: nn.Module
    state_dict: dict[str, torch.Tensor]
    alignments: list[Alignment]
    rounds: int


def average_state_dicts(
    sds: Sequence[dict[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """``Σ w_m θ_m`` of floating tensors (equal weights by default); others from the first.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> sd_a, sd_b = a.state_dict(), b.state_dict()
    >>> avg = average_state_dicts([sd_a, sd_b], weights=[0.25, 0.75])
    >>> torch.allclose(avg["head.bias"], 0.25 * sd_a["head.bias"] + 0.75 * sd_b["head.bias"])
    True
    """
    w = [1.0 / len(sds)] * len(sds) if weights is None else [float(v) for v in weights]
    out = {}
    for k, v in sds[0].items():
        if v.is_floating_point():
            out[k] = sum(wi * sd[k].double() for wi, sd in zip(w, sds, strict=True)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def merge(
    models: Sequence[nn.Module],
    G: SymmetryGroup,
    *,
    method: Literal["reference", "iterative"] = "reference",
    reference: int = 0,
    max_rounds: int = 20,
    seed: int = 0,
    repair_data: Any = None,
) -> MergeResult:
    """Align ``models`` (all of ``G``'s architecture) and average them.

    Args:
        models: two or more models.
        G: their symmetry group.
        method: ``"reference"`` aligns each model to ``models[reference]``;
            ``"iterative"`` starts there and re-aligns every model to the mean of all, until
            no permutation changes or ``max_rounds``.
        seed: seeds weight matching's visiting order.
        repair_data: if given, REPAIR the average on it (equal weights).

    Returns:
        a :class:`MergeResult`; ``alignments[m]`` maps model ``m`` onto the merged unit order.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 6, 2]); G = sl.symmetries(net)
    >>> h = G.element({"P[layers.0.linear]": torch.randperm(6)})
    >>> twin = sl.nn.MLP([3, 6, 2]); _ = twin.load_state_dict(G.act(h, net.state_dict()))
    >>> x = torch.randn(5, 3)
    >>> torch.allclose(merge([net, twin], G).model(x), net(x), atol=1e-5)
    True
    """
    if len(models) < 2:
        raise ValueError("merge needs at least two models")
    if method not in ("reference", "iterative"):
        raise ValueError(f"method must be 'reference' or 'iterative', got {method!r}")
    sds = [m.state_dict() for m in models]
    for sd in sds[1:]:
        check_same_architecture(sds[0], sd)
    target = sds[reference]
    als = [weight_matching(target, sd, G, seed=seed) for sd in sds]
    rounds = 1
    mean = average_state_dicts([al.apply(sd) for al, sd in zip(als, sds, strict=True)])
    while method == "iterative" and rounds < max_rounds:
        new = [
            weight_matching(mean, sd, G, seed=seed + rounds, init=al)
            for al, sd in zip(als, sds, strict=True)
        ]
        rounds += 1
        same = all(
            torch.equal(a.perms[k], b.perms[k])
            for a, b in zip(als, new, strict=True)
            for k in a.perms
        )
        als = new
        mean = average_state_dicts([al.apply(sd) for al, sd in zip(als, sds, strict=True)])
        if same:
            break
    model = copy.deepcopy(models[reference])
    model.load_state_dict(mean)
    model.eval()
    if repair_data is not None:
        aligned = []
        for al, m in zip(als, models, strict=True):
            c = copy.deepcopy(m)
            c.load_state_dict(al.apply(m.state_dict()))
            aligned.append(c)
        model = _repair(model, aligned, [1.0 / len(models)] * len(models), repair_data)
        mean = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return MergeResult(model, mean, als, rounds)
