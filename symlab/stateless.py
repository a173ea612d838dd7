"""Calling a model with other parameters and buffers, its own left exactly as they were.

``torch.func.functional_call`` swaps tensors in by name and back afterwards. Where one module
sits under several names (``self.b = self.a``: module aliases, as in timm's CoaT), the swap of
the second name records the already-swapped tensor as the "original", and the model keeps the
substituted parameters after the call. :func:`call_with_state` restores every module's own
parameter and buffer objects itself.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(2, 2)); net.alias = net[0]
>>> w = net[0].weight
>>> _ = call_with_state(net, {"0.weight": torch.zeros(2, 2)}, (torch.ones(1, 2),))
>>> net[0].weight is w
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["call_with_state"]


def call_with_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """``model(*args, **kwargs)`` with the tensors of ``state`` (state_dict keys) in place of
    its own, through ``torch.func.functional_call``; every module's parameters and buffers are
    the same objects afterwards, also with module aliases and on error. Of several keys naming
    one tensor of the model (tied weights, aliases) the first in ``state`` is used, as
    ``functional_call`` takes one value per tensor.

    >>> net = nn.Linear(2, 1)
    >>> call_with_state(net, {"weight": torch.ones(1, 2), "bias": torch.zeros(1)},
    ...                 (torch.tensor([[1.0, 2.0]]),))
    tensor([[3.]])
    """
    saved = [(m, dict(m._parameters), dict(m._buffers)) for m in model.modules()]
    named = [*model.named_parameters(remove_duplicate=False),
             *model.named_buffers(remove_duplicate=False)]  # fmt: skip
    first: dict[int, str] = {}
    values = dict(state)
    for name, tensor in named:
        if name in values and first.setdefault(id(tensor), name) != name:
            del values[name]
    try:
        return torch.func.functional_call(model, values, args, dict(kwargs or {}))
    finally:
        for m, params, buffers in saved:
            m._parameters.update(params)
            m._buffers.update(buffers)
