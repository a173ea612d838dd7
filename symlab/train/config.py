"""What to train with: :class:`TrainConfig`, learning-rate schedules and optimizer construction.

One config drives both the plain loop (:func:`symlab.train.train`) and vectorised ensembles
(:func:`symlab.train.train_ensemble`). Every optimizer offered acts elementwise, so running it on
N stacked copies of the parameters is exactly N independent optimizers — the basis of the
ensemble's equivalence with sequential training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from symlab.errors import TrainingError

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "TrainConfigError",
    "lr_factor",
    "make_optimizer",
]

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")
LOSSES: tuple[str, ...] = ("auto", "cross_entropy", "mse")


class TrainConfigError(TrainingError, ValueError):
    """A training option has an invalid value (the message lists the valid ones).

    >>> try:
    ...     TrainConfig(optimizer="lbfgs")
    ... except TrainConfigError as e:
    ...     print("optimizer" in str(e))
    True
    """


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run.

    Attributes:
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (decoupled weight decay).
        lr: peak learning rate.
        weight_decay: L2 (SGD, Adam) or decoupled (AdamW) weight decay.
        momentum: SGD momentum (ignored by Adam/AdamW).
        betas: Adam/AdamW betas.
        schedule: ``"constant"``, ``"cosine"`` (to 0 at the last step) or ``"linear"`` decay
            (to 0), each after ``warmup_steps`` of linear warm-up from 0.
        warmup_steps: steps of linear warm-up.
        batch_size: examples per step.
        epochs: passes over the training data; used when ``steps`` is ``None``.
        steps: total optimizer steps (overrides ``epochs``).
        drop_last: drop the last partial batch of each epoch.
        loss: ``"cross_entropy"``, ``"mse"`` or ``"auto"`` (from the data's task).
        progress: show a tqdm bar; ``None`` shows one only when stderr is a terminal.
        eval_batch_size: batch size of the final evaluation.

    >>> cfg = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=1e-2, epochs=100)
    >>> cfg.total_steps(n_train=1024)
    800
    """

    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    batch_size: int = 128
    epochs: int = 10
    steps: int | None = None
    drop_last: bool = False
    loss: Literal["auto", "cross_entropy", "mse"] = "auto"
    progress: bool | None = None
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        for name, valid in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("loss", LOSSES),
        ):
            if getattr(self, name) not in valid:
                raise TrainConfigError(
                    f"{name} must be one of {list(valid)}, got {getattr(self, name)!r}"
                )
        for name in ("lr", "weight_decay", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise TrainConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise TrainConfigError(f"steps must be None or an int >= 1, got {self.steps!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise TrainConfigError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps in one pass over ``n_train`` examples."""
        if self.drop_last:
            if n_train < self.batch_size:
                raise TrainConfigError(
                    f"drop_last with batch_size={self.batch_size} > {n_train} training examples "
                    "leaves no batch; lower batch_size or set drop_last=False"
                )
            return n_train // self.batch_size
        return -(-n_train // self.batch_size)

    def total_steps(self, n_train: int) -> int:
        """Total optimizer steps of a run on ``n_train`` examples."""
        return self.steps if self.steps is not None else self.epochs * self.steps_per_epoch(n_train)


def lr_factor(config: TrainConfig, step: int, total: int) -> float:
    """Multiplier of ``config.lr`` at ``step`` (0-based) of ``total``: warm-up, then the schedule.

    >>> cfg = TrainConfig(schedule="cosine", warmup_steps=2)
    >>> [round(lr_factor(cfg, s, 6), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    span = max(total - config.warmup_steps, 1)
    t = (step - config.warmup_steps) / span  # in [0, 1)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if config.schedule == "linear":
        return 1.0 - t
    return 1.0


def make_optimizer(config: TrainConfig, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """The torch optimizer of ``config`` over ``params`` (fused kernels where available).

    The same call builds the optimizer for one model and for N stacked models; each of
    SGD/Adam/AdamW updates every entry independently, so stacking changes nothing.

    >>> w = torch.zeros(2, requires_grad=True)
    >>> opt = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1), [w])
    >>> type(opt).__name__
    'SGD'
    """
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() for p in params)
    kw: dict[str, object] = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=config.momentum, fused=fused, **kw)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(params, betas=config.betas, fused=fused, **kw)
