"""Reset BatchNorm statistics on training data.

Interpolated weights do not come with valid running statistics; Jordan et al. (REPAIR, ICLR 2023)
and Git Re-Basin (Ainsworth et al. 2023) recompute them on training data before evaluating each
point of a path. The statistics are the exact average over the data (``momentum=None``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from symlab.align.data import iter_batches
from symlab.errors import DataError

__all__ = ["has_batchnorm", "reset_bn_stats"]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer that tracks running statistics.

    >>> import symlab as sl
    >>> has_batchnorm(sl.nn.MLP([3, 4, 2])), has_batchnorm(sl.nn.MLP([3, 4, 2], norm="batchnorm"))
    (False, True)
    """
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())


def reset_bn_stats(
    model: nn.Module, data: Any, *, batch_size: int = 1024, split: str = "train"
) -> nn.Module:
    """Recompute every BatchNorm's running mean/var of ``model`` (in place) on ``data``.

    Returns the model (in eval mode). Other parameters are untouched.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    >>> x = torch.randn(64, 3)
    >>> _ = reset_bn_stats(net, x)
    >>> h = net[0](x).detach()
    >>> torch.allclose(net[1].running_mean, h.mean(0), atol=1e-5), net.training
    (True, False)
    >>> torch.allclose(net[1].running_var, h.var(0), atol=1e-5)
    True
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    seen = 0
    try:
        with torch.no_grad():
            for x, _ in iter_batches(data, batch_size, split):
                if len(x) < 2:
                    continue
                model(x.clone())  # a copy: a forward may write into its input
                seen += len(x)
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.eval()
    if bns and seen < 2:
        raise DataError("resetting BatchNorm statistics needs batches of at least 2 examples")
    return model
