"""REPAIR: undo the variance collapse of interpolated networks.

Follows Jordan, Sedghi, Saukh, Entezari, Neyshabur, "REPAIR: REnormalizing Permuted Activations
for Interpolation Repair" (ICLR 2023): in a merged network ``Σ_m w_m θ_m`` each hidden unit's
pre-activation statistics are reset to the same combination of the endpoints' statistics,
``(μ, σ) ← Σ_m w_m (μ_m, σ_m)`` (two endpoints: ``(1 − α)(μ_A, σ_A) + α(μ_B, σ_B)``). The
correction is an affine map per unit, folded into the layer's weight and bias. Layers are
corrected in forward order, each measured after the earlier corrections. For BatchNorm networks
REPAIR reduces to recomputing the BatchNorm statistics (:func:`reset_bn_stats`).

Repaired layers: every ``nn.Linear`` / ``nn.Conv*d`` except the last one run (the output head).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from symlab.align.data import iter_batches
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.errors import DataError

__all__ = ["repair", "repair_layers"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def repair_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the layers REPAIR corrects: linear/conv modules in the order they run on
    ``x``, the last one (the output head) left out.

    >>> import symlab as sl
    >>> repair_layers(sl.nn.MLP([3, 4, 4, 2]), torch.randn(8, 3))
    ['layers.0.linear', 'layers.1.linear']
    """
    order: list[str] = []
    hs = [
        m.register_forward_hook(lambda _m, _i, _o, n=name: order.append(n))
        for name, m in model.named_modules()
        if isinstance(m, _LAYERS)
    ]
    try:
        with torch.no_grad():
            model(x.clone())  # a copy: a forward may write into its input
    finally:
        for h in hs:
            h.remove()
    return list(dict.fromkeys(order))[:-1]


def _stats(
    model: nn.Module, names: list[str], data: Any, batch_size: int, split: str
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per named layer, the per-channel mean and std of its output on ``data``."""
    sums: dict[str, list[Any]] = {n: [0, 0.0, 0.0] for n in names}

    def hook(name: str):
        def f(m: nn.Module, _i: Any, o: torch.Tensor) -> None:
            ch = o if isinstance(m, nn.Linear) else o.movedim(1, -1)
            ch = ch.reshape(-1, ch.shape[-1]).double()
            s = sums[name]
            s[0] += ch.shape[0]
            s[1] = s[1] + ch.sum(0)
            s[2] = s[2] + (ch * ch).sum(0)

        return f

    hs = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    model.eval()
    try:
        with torch.no_grad():
            for x, _ in iter_batches(data, batch_size, split):
                model(x.clone())  # a copy: a forward may write into its input
    finally:
        for h in hs:
            h.remove()
    out = {}
    for n, (cnt, s1, s2) in sums.items():
        if cnt < 2:
            raise DataError("REPAIR needs at least 2 examples to measure unit statistics")
        mean = s1 / cnt
        out[n] = (mean, (s2 / cnt - mean**2).clamp_min(0).sqrt())
    return out


def repair(
    merged: nn.Module,
    endpoints: Sequence[nn.Module],
    weights: Sequence[float],
    data: Any,
    *,
    batch_size: int = 1024,
    split: str = "train",
    inplace: bool = False,
) -> nn.Module:
    """REPAIR ``merged`` (``≈ Σ w_m endpoints[m]``) on ``data`` (see the module docstring).

    Args:
        merged: the interpolated or averaged model.
        endpoints: the models it was made from (already aligned), and ``weights`` their
            coefficients (e.g. ``[1 − α, α]``).
        data: training data (a Dataset's ``split``, inputs, ``(x, y)`` or batches).

    Returns:
        the repaired model (a copy unless ``inplace``), in eval mode.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> merged = sl.nn.MLP([3, 4, 2])
    >>> _ = merged.load_state_dict(sl.connect.average_state_dicts([a.state_dict(), b.state_dict()]))
    >>> fixed = repair(merged, [a, b], [0.5, 0.5], torch.randn(64, 3))
    >>> fixed is merged, fixed.training
    (False, False)
    """
    if len(endpoints) != len(weights) or not endpoints:
        raise ValueError("give one weight per endpoint model")
    model = merged if inplace else copy.deepcopy(merged)
    if has_batchnorm(model):
        return reset_bn_stats(model, data, batch_size=batch_size, split=split)
    x0 = next(iter_batches(data, batch_size, split))[0]
    names = repair_layers(model, x0)
    if not names:
        return model.eval()
    ends = [_stats(m, names, data, batch_size, split) for m in endpoints]
    w = [float(v) for v in weights]
    for name in names:
        mu_goal = sum(wi * e[name][0] for wi, e in zip(w, ends, strict=True))
        sd_goal = sum(wi * e[name][1] for wi, e in zip(w, ends, strict=True))
        mu, sd = _stats(model, [name], data, batch_size, split)[name]
        ok = sd > 1e-8 * max(float(sd.max()), 1e-30)
        ratio = torch.where(ok, sd_goal / torch.where(ok, sd, 1.0), 1.0)
        layer = model.get_submodule(name)
        with torch.no_grad():
            shape = (-1,) + (1,) * (layer.weight.ndim - 1)
            layer.weight.mul_(ratio.reshape(shape).to(layer.weight.dtype))
            if layer.bias is not None:
                new_b = (layer.bias.double() - mu) * ratio + mu_goal
                layer.bias.copy_(new_b.to(layer.bias.dtype))
    return model.eval()
