"""Shared pieces of both training paths: seeded model building, losses, input checks, masks.

Bad input is caught here, before the first step, with a :class:`~symlab.errors.DataError` that
says what did not fit and what to do — not a shape error from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from symlab.data import Dataset
from symlab.errors import DataError, TrainingError
from symlab.seeding import child_seed

from .config import TrainConfig

__all__ = [
    "build_model",
    "check_fit",
    "loss_kind",
    "masked_step",
    "per_run_loss",
    "reset_fixed",
    "trainable_masks",
]


def build_model(make_model: Callable[[int], nn.Module], seed: int) -> nn.Module:
    """``make_model(seed)`` with torch's global generator seeded from ``seed`` meanwhile.

    Factories that use torch's default initialisation (``nn.Linear(...)``) thus become
    reproducible from ``seed`` alone, and the caller's global random state is left untouched.

    >>> a = build_model(lambda s: nn.Linear(2, 2), 3); b = build_model(lambda s: nn.Linear(2, 2), 3)
    >>> bool((a.weight == b.weight).all())
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(child_seed(seed, 101))
        model = make_model(seed)
    if not isinstance(model, nn.Module):
        raise TrainingError(f"make_model({seed}) returned {type(model).__name__}, not an nn.Module")
    return model


def loss_kind(config: TrainConfig, data: Dataset) -> str:
    """``"cross_entropy"`` or ``"mse"``: the config's loss, or the data's task when ``auto``."""
    if config.loss != "auto":
        if config.loss == "cross_entropy" and data.task != "classification":
            raise DataError(
                f"loss 'cross_entropy' needs class labels but data set {data.name!r} is a "
                "regression task; use loss='mse' or 'auto'"
            )
        return config.loss
    return "cross_entropy" if data.task == "classification" else "mse"


def per_run_loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean loss of each run: ``out`` is ``[runs, batch, ...]``, ``y`` ``[runs, batch, ...]``."""
    runs, batch = out.shape[:2]
    if kind == "cross_entropy":
        losses = F.cross_entropy(out.flatten(0, 1), y.flatten(0, 1), reduction="none")
        return losses.view(runs, batch).mean(1)
    targets = y.to(out.dtype) if y.shape == out.shape else y.reshape(out.shape).to(out.dtype)
    return (out - targets).square().reshape(runs, -1).mean(1)


def _first_linear_in(model: nn.Module) -> tuple[str, int] | None:
    """Name and ``in_features`` of a Sequential's first layer, when it is linear."""
    if not isinstance(model, nn.Sequential) or len(model) == 0:
        return None
    first = model[0]
    while isinstance(first, nn.Sequential) and len(first):
        first = first[0]
    n_in = getattr(first, "in_features", None)
    return (type(first).__name__, n_in) if isinstance(n_in, int) else None


def check_fit(
    forward: Callable[[torch.Tensor], torch.Tensor],
    model: nn.Module,
    data: Dataset,
    kind: str,
) -> None:
    """Raise a :class:`DataError` unless ``forward`` maps the data's inputs to fitting outputs.

    Checks: the inputs enter the model; classification outputs are ``[batch, C]`` logits with
    every label in ``[0, C)``; regression outputs have the targets' shape.
    """
    shape = tuple(data.input_shape)
    first = _first_linear_in(model)
    if first is not None and len(shape) == 1 and first[1] != shape[0]:
        raise DataError(
            f"the model's first layer ({first[0]}) takes {first[1]} features but data set "
            f"{data.name!r} has inputs of shape {shape}; build the model with input width "
            f"{shape[0]}"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = forward(data.x_train[:2])
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(
            f"the model does not accept inputs of shape {(2, *shape)} from data set "
            f"{data.name!r} ({msg}); build the model for input shape {shape} or reshape the data"
        ) from None
    finally:
        model.train(was_training)
    if kind == "cross_entropy":
        if out.ndim != 2:
            raise DataError(
                f"a classifier must output logits [batch, classes], the model gives shape "
                f"{tuple(out.shape)}"
            )
        classes = out.shape[1]
        ys = [data.y_train, data.y_test]
        lo = min(int(y.min()) for y in ys if len(y))
        hi = max(int(y.max()) for y in ys if len(y))
        if lo < 0 or hi >= classes:
            raise DataError(
                f"labels of data set {data.name!r} lie in [{lo}, {hi}] but the model outputs "
                f"{classes} logits (labels 0..{classes - 1}); give the model {hi + 1} outputs or "
                "fix the labels"
            )
    elif tuple(out.shape[1:]) != tuple(data.y_train.shape[1:]):
        raise DataError(
            f"the model outputs shape {tuple(out.shape[1:])} per example but the targets of "
            f"data set {data.name!r} have shape {tuple(data.y_train.shape[1:])}"
        )


def trainable_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{param_name: mask}`` for every ``weight`` whose module has a same-shaped ``mask`` buffer.

    This covers :class:`symlab.nn.WAsymLinear` (Lim et al. 2024): entries where ``mask == 0``
    are fixed; training keeps them exactly unchanged, whatever the optimizer does.

    >>> import symlab as sl
    >>> sorted(trainable_masks(sl.nn.MLP([3, 4, 2], asym={"num_fixed": 1})))
    ['head.weight', 'layers.0.linear.weight']
    """
    masks: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        mask = getattr(module, "mask", None)
        if (
            isinstance(weight, nn.Parameter)
            and isinstance(mask, torch.Tensor)
            and mask.shape == weight.shape
        ):
            masks[f"{name}.weight" if name else "weight"] = mask.detach().bool()
    return masks


def masked_step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    frozen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> None:
    """One optimizer step on ``loss`` that keeps fixed entries fixed (Lim et al. 2024): the
    gradient of every ``(param, mask, fixed)`` in ``frozen`` is masked, and after the step the
    parameter is reset to ``param · mask + fixed`` (so momentum and weight decay cannot move
    fixed entries either).

    >>> w = torch.nn.Parameter(torch.ones(2)); mask = torch.tensor([1.0, 0.0])
    >>> opt = torch.optim.SGD([w], lr=0.5, weight_decay=0.1)
    >>> masked_step(opt, (w * 3).sum(), [(w, mask, torch.zeros(2))])
    >>> [round(v, 4) for v in w.detach().tolist()]  # 1 - 0.5·(3 + 0.1); the fixed entry stays 0
    [-0.55, 0.0]
    """
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for p, mask, _ in frozen:
        if p.grad is not None:
            p.grad.mul_(mask)
    opt.step()
    reset_fixed(frozen)


@torch.no_grad()
def reset_fixed(frozen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Put every fixed entry back after an optimizer step: ``param ← param · mask + fixed``
    (Lim et al. 2024; momentum and weight decay must not move them).

    >>> w = torch.nn.Parameter(torch.tensor([2.0, 5.0]))
    >>> reset_fixed([(w, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.7]))])
    >>> [round(v, 4) for v in w.detach().tolist()]
    [2.0, 0.7]
    """
    for p, mask, fixed in frozen:
        p.mul_(mask).add_(fixed)
