"""What a training run reports (:class:`TrainResult`) and how models are evaluated."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from symlab.data import Dataset

from .checks import per_run_loss

__all__ = ["TrainResult", "epoch_means", "evaluate", "evaluate_runs"]


@dataclass
class TrainResult:
    """Record of one run: losses along the way and final metrics.

    Attributes:
        step_losses: training loss of every step run in this call, ``[steps_run]``.
        epoch_losses: mean step loss of every epoch that ended in this call.
        train_loss, train_acc, test_loss, test_acc: final metrics on the full splits
            (accuracy is ``None`` for regression, test metrics ``None`` without test data).
        steps: the global step reached (total steps trained, including any before a resume).
        data_seed: the seed of the batch order.
        seconds: wall time of the call.
        optimizer_state: the optimizer's ``state_dict`` at the end, to resume or spawn from.
        method: how it was trained: ``"single"`` (:func:`train`), or the ensemble path
            ``"fast"`` / ``"vmap"``.

    >>> import torch, symlab as sl
    >>> x = torch.randn(32, 3); data = sl.data.from_tensors(x, (x[:, 0] > 0).long(), num_classes=2)
    >>> cfg = sl.train.TrainConfig(steps=3, batch_size=16)
    >>> r = sl.train.train(torch.nn.Linear(3, 2), data, cfg)
    >>> r.steps, len(r.step_losses)
    (3, 3)
    >>> repr(r).startswith("TrainResult(single: steps=3 train_loss=")
    True
    """

    step_losses: torch.Tensor
    epoch_losses: torch.Tensor
    train_loss: float
    train_acc: float | None
    test_loss: float | None
    test_acc: float | None
    steps: int
    data_seed: int
    seconds: float
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    method: str = "single"

    def __repr__(self) -> str:
        """Short: the final metrics and the sizes of the loss records, not the tensors."""
        last = (
            f", last step loss {float(self.step_losses[-1]):.4g}" if len(self.step_losses) else ""
        )
        return (
            f"TrainResult({self.method}: {self.summary()}, {self.seconds:.2f} s; "
            f"step_losses [{len(self.step_losses)}]{last}, epoch_losses "
            f"[{len(self.epoch_losses)}], data_seed={self.data_seed})"
        )

    def summary(self) -> str:
        """One line: final losses and accuracies."""
        parts = [f"steps={self.steps}", f"train_loss={self.train_loss:.4f}"]
        if self.train_acc is not None:
            parts.append(f"train_acc={self.train_acc:.3f}")
        if self.test_loss is not None:
            parts.append(f"test_loss={self.test_loss:.4f}")
        if self.test_acc is not None:
            parts.append(f"test_acc={self.test_acc:.3f}")
        return " ".join(parts)


@torch.no_grad()
def evaluate_runs(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    kind: str,
    batch_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean loss ``[runs]`` and accuracy ``[runs]`` (``None`` for MSE) of stacked runs.

    ``forward`` maps a chunk of shared inputs ``[b, ...]`` to outputs ``[runs, b, ...]``.
    """
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        out = forward(xb)
        yb_runs = yb.unsqueeze(0).expand(out.shape[0], *yb.shape)
        chunk = per_run_loss(out, yb_runs, kind) * len(xb)
        loss_sum = chunk if loss_sum is None else loss_sum + chunk
        if kind == "cross_entropy":
            hits = (out.argmax(-1) == yb_runs).sum(1)
            correct = hits if correct is None else correct + hits
    assert loss_sum is not None
    acc = None if correct is None else correct.double() / len(x)
    return loss_sum / len(x), acc


def evaluate(
    model: nn.Module, data: Dataset, split: str = "test", kind: str | None = None
) -> tuple[float, float | None]:
    """``(mean loss, accuracy)`` of ``model`` on a split (accuracy ``None`` for regression).

    The model is evaluated in eval mode and restored to its previous mode.

    >>> from symlab.data import load
    >>> ds = load("gaussian_mixture", n_train=50, n_test=20)
    >>> loss, acc = evaluate(nn.Linear(2, 3), ds)
    >>> 0.0 <= acc <= 1.0
    True
    """
    kind = kind or ("cross_entropy" if data.task == "classification" else "mse")
    x, y = data.tensors(split)
    device = next((p.device for p in model.parameters()), x.device)
    x, y = x.to(device), y.to(device)
    was_training = model.training
    model.eval()
    try:
        loss, acc = evaluate_runs(lambda xb: model(xb).unsqueeze(0), x, y, kind)
    finally:
        model.train(was_training)
    return float(loss[0]), None if acc is None else float(acc[0])


def epoch_means(step_losses: torch.Tensor, start: int, steps_per_epoch: int) -> torch.Tensor:
    """Mean of ``step_losses`` (global steps ``start, start+1, ...``) over each epoch that ends
    among them, counting only the steps present.

    >>> epoch_means(torch.tensor([1.0, 3.0, 5.0, 7.0]), start=1, steps_per_epoch=2)
    tensor([1., 4.])
    """
    means = []
    end = start + len(step_losses)
    for last in range(start, end):
        if (last + 1) % steps_per_epoch == 0:
            first = max(start, last + 1 - steps_per_epoch)
            means.append(step_losses[first - start : last + 1 - start].mean(0))
    if not means:
        return step_losses[:0]
    return torch.stack(means)
