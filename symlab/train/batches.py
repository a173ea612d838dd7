"""The order in which training examples are visited, as a pure function of ``(data_seed, step)``.

Epoch ``e`` visits the examples in the permutation drawn from ``generator(data_seed, e)``; step
``s`` takes batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``. Because the order
is random-access, a run can be resumed or forked at any step (Frankle et al.'s spawning) and the
sequential and vectorised paths see exactly the same batches for the same ``data_seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from symlab.seeding import generator

__all__ = ["BatchOrder"]


class BatchOrder:
    """Batch indices of one or more runs (one ``data_seed`` each), step by step.

    >>> order = BatchOrder(n=10, batch_size=4, data_seeds=[0, 1])
    >>> order.steps_per_epoch, tuple(order.indices(0).shape), tuple(order.indices(2).shape)
    (3, (2, 4), (2, 2))
    """

    def __init__(
        self, n: int, batch_size: int, data_seeds: Sequence[int], drop_last: bool = False
    ) -> None:
        self.n, self.batch_size, self.drop_last = n, batch_size, drop_last
        self.data_seeds = [int(s) for s in data_seeds]
        self.steps_per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        self._epoch = -1
        self._perms = torch.empty(0, dtype=torch.int64)

    def _permutations(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self._perms = torch.stack(
                [torch.randperm(self.n, generator=generator(s, epoch)) for s in self.data_seeds]
            )
            self._epoch = epoch
        return self._perms

    def indices(self, step: int) -> torch.Tensor:
        """``[runs, batch]`` example indices of global step ``step`` (0-based)."""
        epoch, j = divmod(step, self.steps_per_epoch)
        perms = self._permutations(epoch)
        return perms[:, j * self.batch_size : (j + 1) * self.batch_size]

    def epoch_end(self, step: int) -> bool:
        """Whether ``step`` is the last step of an epoch."""
        return (step + 1) % self.steps_per_epoch == 0
