"""Merging many models: align them to one another, then average.

Two schemes (see ``docs/concepts/connectivity.md``): align every model to a common *reference*
(Git Re-Basin's two-model recipe applied N − 1 times), or the *iterative* variant that
re-aligns every model to the running mean until no permutation changes (Ainsworth et al. 2023,
MergeMany; Sharma et al. 2024 use it to test strong linear connectivity). Alignment is
:func:`weight_matching` over the derived group; optional REPAIR (Jordan et al. 2023) fixes the
merged model's unit statistics.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from symlab.align.alignment import Alignment
from symlab.align.weight_matching import weight_matching
from symlab.connect.interpolate import check_same_architecture
from symlab.connect.repair import repair as _repair
from symlab.errors import ArchitectureMismatchError, ArgumentError
from symlab.progress import progress_bar
from symlab.symmetry.group import SymmetryGroup

__all__ = ["MergeResult", "average_state_dicts", "merge"]

log = logging.getLogger(__name__)


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
    sds = list(sds)
    if not sds:
        raise ArgumentError("average_state_dicts: sds is empty; pass one or more state_dicts")
    w = [1.0 / len(sds)] * len(sds) if weights is None else [float(v) for v in weights]
    if len(w) != len(sds):
        raise ArgumentError(
            f"average_state_dicts: got {len(w)} weights for {len(sds)} state_dicts; pass one "
            "weight per state_dict (or none for equal weights)"
        )
    for i, sd in enumerate(sds[1:], start=1):
        try:
            check_same_architecture(sds[0], sd)
        except ArchitectureMismatchError as exc:
            raise ArchitectureMismatchError(
                f"average_state_dicts: sds[{i}] (model_b below) does not fit sds[0] (model_a): "
                f"{exc}; average models of one architecture (same widths)"
            ) from None
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
    progress: bool | None = None,
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
        progress: a bar over the alignments (default: only when stderr is a terminal; see
            :mod:`symlab.progress`).

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
    models = list(models)
    if len(models) < 2:
        raise ArgumentError(
            f"merge: models has {len(models)} model(s); merging needs at least two (to align "
            "one model to another, use sl.align.weight_matching)"
        )
    if method not in ("reference", "iterative"):
        raise ArgumentError(f"merge: method must be 'reference' or 'iterative', got {method!r}")
    if not 0 <= reference < len(models):
        raise ArgumentError(
            f"merge: reference={reference} is not an index of the {len(models)} models"
        )
    if not all(isinstance(m, nn.Module) for m in models):
        kinds = sorted({type(m).__name__ for m in models if not isinstance(m, nn.Module)})
        raise ArgumentError(f"merge: models must be nn.Modules, got {kinds}")
    sds = [m.state_dict() for m in models]
    for i, sd in enumerate(sds[1:], start=1):
        try:
            check_same_architecture(sds[0], sd)
        except ArchitectureMismatchError as exc:
            raise ArchitectureMismatchError(
                f"merge: models[{i}] (model_b below) does not fit models[0] (model_a): {exc}"
            ) from None
    target = sds[reference]
    bar = progress_bar(len(sds) * (max_rounds if method == "iterative" else 1), progress, "merge")
    als = []
    for sd in sds:
        als.append(weight_matching(target, sd, G, seed=seed))
        bar.update()
    rounds = 1
    mean = average_state_dicts([al.apply(sd) for al, sd in zip(als, sds, strict=True)])
    while method == "iterative" and rounds < max_rounds:
        new = []
        for al, sd in zip(als, sds, strict=True):
            new.append(weight_matching(mean, sd, G, seed=seed + rounds, init=al))
            bar.update()
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
    bar.close()
    log.info("merged %d models (%s) in %d alignment round(s)", len(models), method, rounds)
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
