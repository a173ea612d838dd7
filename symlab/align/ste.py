"""Straight-through estimator alignment (Git Re-Basin, §3.3).

Follows Ainsworth, Hayase, Srinivasa, "Git Re-Basin" (ICLR 2023), Algorithm 3: learn free
parameters ``θ̃_B`` (initialised at ``θ_A``) such that the midpoint ``½ (θ_A + proj(θ̃_B))`` has
low loss, where ``proj(θ̃_B) = P·θ_B`` with ``P`` the weight matching of ``θ_B`` to ``θ̃_B``. The
forward pass goes through the projection, the backward pass straight through it to ``θ̃_B``:
``θ_ste = θ̃_B + stopgrad(P·θ_B − θ̃_B)``. Optimiser: Adam.

The projection changes only now and then; whenever it does, its midpoint loss is measured on
``data``'s training split, and the best permutation seen (the weight-matching start included)
is returned, so the result is never worse than plain weight matching on that measure.
BatchNorm statistics are not reset inside the loop (the midpoint uses the endpoints' average).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from symlab.align.alignment import Alignment
from symlab.align.data import split_tensors
from symlab.align.weight_matching import weight_matching
from symlab.errors import DataError
from symlab.seeding import generator
from symlab.stateless import call_with_state
from symlab.symmetry.group import SymmetryGroup

__all__ = ["straight_through"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _loss_fn(y: torch.Tensor, loss: str | LossFn | None) -> LossFn:
    if callable(loss):
        return loss
    name = loss or ("mse" if y.is_floating_point() else "cross_entropy")
    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse":
        return lambda out, t: F.mse_loss(out, t.to(out.dtype))
    raise ValueError(f"loss must be 'cross_entropy', 'mse' or a callable, got {loss!r}")


def straight_through(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    G: SymmetryGroup,
    *,
    steps: int = 200,
    lr: float = 1e-3,
    batch_size: int = 128,
    loss: str | LossFn | None = None,
    split: str = "train",
    seed: int = 0,
) -> Alignment:
    """Align ``model_b`` to ``model_a`` with Git Re-Basin's straight-through estimator.

    Args:
        model_a, model_b: two models of ``G``'s architecture.
        data: a :class:`symlab.data.Dataset` or ``(x, y)`` (its ``split`` is used).
        steps: optimiser steps; ``lr``: Adam's learning rate; ``batch_size``: minibatch rows.
        loss: ``"cross_entropy"``, ``"mse"`` or ``loss(outputs, targets)`` (default by the
            targets' dtype).
        seed: minibatch order and weight matching's visiting order.

    Returns:
        an :class:`Alignment` (``method="straight_through"``) whose ``objective`` is minus the
        best midpoint loss on the split; ``trace`` that value at every distinct projection
        (the first: plain weight matching); ``info`` holds ``midpoint_loss``,
        ``start_midpoint_loss``, ``projections``.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> al = straight_through(a, b, (x, y), sl.symmetries(a), steps=5)  # default: 200 steps
    >>> al.method, sorted(al.info)[:2]
    ('straight_through', ['midpoint_loss', 'projections'])
    """
    tensors = split_tensors(data, split)
    if tensors is None or tensors[1] is None:
        raise DataError("straight_through needs in-memory (x, y): a Dataset or a tuple")
    x_all, y_all = tensors
    if len(x_all) < 1:
        raise DataError("straight_through got no data rows")
    fn = _loss_fn(y_all, loss)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    names = [n for n, _ in model_a.named_parameters()]
    theta_a = {n: sd_a[n].detach() for n in names}
    buffers = [k for k in sd_a if k not in theta_a]
    tilde = {n: theta_a[n].clone().requires_grad_(True) for n in names}
    opt = torch.optim.Adam(tilde.values(), lr=lr)
    gen = generator(seed)
    was_training = model_a.training
    model_a.eval()

    def midpoint(proj: dict[str, torch.Tensor], params: dict[str, torch.Tensor]):
        mid = {n: 0.5 * (theta_a[n] + params[n]) for n in names}
        for k in buffers:
            a, b = sd_a[k], proj[k]
            mid[k] = 0.5 * (a + b) if a.is_floating_point() else a
        return mid

    def full_loss(proj: dict[str, torch.Tensor]) -> float:
        with torch.no_grad():
            out = call_with_state(model_a, midpoint(proj, proj), (x_all,))
            return float(fn(out, y_all))

    al = weight_matching(sd_a, sd_b, G, seed=seed)
    proj = al.apply(sd_b)
    best_al, best = al, full_loss(proj)
    trace = [-best]
    start = best
    try:
        for step in range(steps + 1):
            current = {n: tilde[n].detach() for n in names}
            new = weight_matching({**sd_a, **current}, sd_b, G, seed=seed + step + 1, init=al)
            if any(not torch.equal(new.perms[k], al.perms[k]) for k in al.perms):
                al, proj = new, new.apply(sd_b)
                val = full_loss(proj)
                trace.append(-val)
                if val < best:
                    best_al, best = al, val
            if step == steps:
                break
            ste = {n: tilde[n] + (proj[n].to(tilde[n].dtype) - tilde[n]).detach() for n in names}
            idx = torch.randint(0, len(x_all), (min(batch_size, len(x_all)),), generator=gen)
            out = call_with_state(model_a, midpoint(proj, ste), (x_all[idx],))
            opt.zero_grad()
            fn(out, y_all[idx]).backward()
            opt.step()
    finally:
        model_a.train(was_training)
    return Alignment(
        G, best_al.perms, best_al.element, -best, trace, "straight_through",
        {"midpoint_loss": best, "start_midpoint_loss": start, "projections": len(trace),
         "steps": steps},
    )  # fmt: skip
