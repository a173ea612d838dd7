"""Running a model in eval mode for a while, every submodule's own mode restored afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (BatchNorm on running statistics, dropout off); each submodule's
    ``training`` flag is restored exactly afterwards, also on error.

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> net[0].eval()
    Linear(in_features=2, out_features=2, bias=True)
    >>> with eval_mode(net):
    ...     net[1].training
    False
    >>> net.training, net[0].training, net[1].training
    (True, False, True)
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode
