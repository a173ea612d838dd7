"""Spawning (Frankle, Dziugaite, Roy, Carbin, ICML 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis"): train to step k, fork copies that differ only in data order, and
train each to the end.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from symlab.data import Dataset
from symlab.errors import TrainingError

from .config import TrainConfig
from .ensemble import train_stacked
from .loop import train
from .result import TrainResult

__all__ = ["Spawn", "spawn"]


@dataclass
class Spawn:
    """The parent at step ``k`` and its children trained to the end.

    Attributes:
        parent: a copy of the model at step ``k`` (the fork point).
        children: one trained model per child data seed.
        parent_result: the run from step 0 to ``k``.
        results: each child's run from step ``k`` to the end.
        k: the fork step.

    >>> import torch, symlab as sl
    >>> from torch import nn
    >>> x = torch.randn(32, 3); data = sl.data.from_tensors(x, (x[:, 0] > 0).long(), num_classes=2)
    >>> make = lambda seed: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> sp = spawn(make(0), data, TrainConfig(steps=4, batch_size=16), k=2)
    >>> len(sp.children), sp.k
    (2, 2)
    """

    parent: nn.Module
    children: list[nn.Module]
    parent_result: TrainResult
    results: list[TrainResult]
    k: int


def spawn(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    k: int,
    data_seeds: Sequence[int] = (1, 2),
    parent_data_seed: int = 0,
    method: str = "auto",
) -> Spawn:
    """Train a copy of ``model`` for ``k`` steps, then fork one child per ``data_seeds``.

    Children start from the parent's weights *and* optimizer state at step ``k`` and continue
    the same schedule to the run's total steps, each with its own batch order (from step ``k``
    of its ``data_seed``'s order). A child whose data seed equals ``parent_data_seed`` reproduces
    the unforked run. Children train together as a vectorised ensemble (``method`` as in
    :func:`train_stacked`). ``model`` itself is not modified. Frankle et al. call the pair
    stable at ``k`` when their error barrier is below 2 percentage points.

    >>> from symlab.data import load
    >>> ds = load("gaussian_mixture", n_train=64, n_test=32)
    >>> net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> sp = spawn(net, ds, TrainConfig(epochs=4, batch_size=16), k=5, data_seeds=[1, 2])
    >>> len(sp.children), sp.results[0].steps
    (2, 16)
    """
    config = config or TrainConfig()
    if not data_seeds:
        raise TrainingError("spawn needs at least one child data seed")
    total = config.total_steps(data.n_train)
    if not 0 <= k <= total:
        raise TrainingError(f"fork step k must lie in [0, {total}] (the run's steps), got {k}")
    parent = copy.deepcopy(model)
    parent_result = train(parent, data, config, data_seed=parent_data_seed, stop_at=k)
    children = [copy.deepcopy(parent) for _ in data_seeds]
    state = parent_result.optimizer_state
    results = train_stacked(
        children,
        data,
        config,
        data_seeds=list(data_seeds),
        start_step=k,
        optimizer_states=None if state is None else [state] * len(children),
        method=method,
    )
    return Spawn(parent, children, parent_result, results, k)
