"""The plain training loop: one model, one optimizer, one batch order.

Deliberately readable; :mod:`symlab.train.ensemble` trains N models at once with the same steps.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from symlab.data import Dataset
from symlab.device import resolve_device
from symlab.errors import TrainingError

from .batches import BatchOrder
from .checks import check_fit, loss_kind, masked_step, per_run_loss, trainable_masks
from .config import TrainConfig, lr_factor, make_optimizer
from .progress import progress_bar
from .result import TrainResult, epoch_means, evaluate

__all__ = ["final_metrics", "step_range", "train"]

log = logging.getLogger(__name__)


def step_range(config: TrainConfig, data: Dataset, start_step: int, stop_at: int | None) -> int:
    """Validate ``start_step``/``stop_at`` against the run's total steps; return the end step."""
    total = config.total_steps(data.n_train)
    end = total if stop_at is None else stop_at
    if not 0 <= start_step <= end <= total:
        raise TrainingError(
            f"need 0 <= start_step ({start_step}) <= stop_at ({end}) <= total steps ({total})"
        )
    return end


def final_metrics(
    model: nn.Module, data: Dataset, kind: str
) -> tuple[float, float | None, float | None, float | None]:
    """``(train_loss, train_acc, test_loss, test_acc)`` on the full splits."""
    train_loss, train_acc = evaluate(model, data, "train", kind)
    if data.n_test == 0:
        return train_loss, train_acc, None, None
    test_loss, test_acc = evaluate(model, data, "test", kind)
    return train_loss, train_acc, test_loss, test_acc


def non_finite_error(step: int, total: int, losses: torch.Tensor, who: str) -> TrainingError:
    """The error raised when the loss stops being finite."""
    return TrainingError(
        f"training loss became {losses.tolist()} at step {step} of {total} ({who}); stopped "
        "before applying that step, so the parameters are those after step "
        f"{step - 1}. Lower the learning rate, add warm-up, or check the data for outliers."
    )


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    data_seed: int = 0,
    start_step: int = 0,
    stop_at: int | None = None,
    optimizer_state: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` and report losses and final metrics.

    The model's initialisation is whatever it came with (seed it when you build it, e.g. with
    :func:`symlab.train.build_model`); ``data_seed`` alone fixes the batch order, so the same
    init can be trained under different SGD noise (Frankle et al. 2020). ``start_step``,
    ``stop_at`` and ``optimizer_state`` resume or stop a run part-way (the learning-rate schedule
    and batch order are those of the full run). Entries of a W-asymmetric layer's ``weight``
    where ``mask == 0`` (Lim et al. 2024) stay exactly unchanged. ``device`` (``"cpu"``,
    ``"cuda"``, ...) moves the model there first (in place); by default it trains where the
    model's parameters are.

    Raises:
        DataError: the data do not fit the model (shape, label range).
        DeviceError: ``device`` is not available here.
        TrainingError: the loss became NaN or infinite (the message names the step).

    >>> from symlab.data import load
    >>> ds = load("gaussian_mixture", n_train=64, n_test=32)
    >>> net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> res = train(net, ds, TrainConfig(lr=1e-2, epochs=5, batch_size=16), data_seed=0)
    >>> res.steps, len(res.step_losses), len(res.epoch_losses)
    (20, 20, 5)
    """
    config = config or TrainConfig()
    if device is not None:
        model.to(resolve_device(device))
    kind = loss_kind(config, data)
    end = step_range(config, data, start_step, stop_at)
    total = config.total_steps(data.n_train)
    check_fit(model, model, data, kind)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if data.x_train.device != device:
        data = data.to(device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(config, params)
    if optimizer_state is not None:
        try:
            opt.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as err:
            raise TrainingError(f"optimizer_state does not fit this model: {err}") from None
    masked = dict(model.named_parameters())
    frozen = [
        (masked[n], m.to(masked[n].dtype), masked[n].detach() * ~m)
        for n, m in trainable_masks(model).items()
        if masked[n].requires_grad
    ]
    order = BatchOrder(data.n_train, config.batch_size, [data_seed], config.drop_last)
    losses = torch.empty(end - start_step)
    t0 = time.perf_counter()
    model.train()
    with progress_bar(end - start_step, config.progress, "train") as bar:
        for step in range(start_step, end):
            idx = order.indices(step)[0].to(device)
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_factor(config, step, total)
            loss = per_run_loss(model(x[idx]).unsqueeze(0), y[idx].unsqueeze(0), kind)[0]
            if not bool(torch.isfinite(loss)):
                raise non_finite_error(step, total, loss.detach(), f"data_seed {data_seed}")
            masked_step(opt, loss, frozen)
            losses[step - start_step] = loss.detach()
            bar.update()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    train_loss, train_acc, test_loss, test_acc = final_metrics(model, data, kind)
    log.info("trained %s for %d steps on %s in %.1f s: train loss %.4g",
             type(model).__name__, end - start_step, device, time.perf_counter() - t0,
             train_loss)  # fmt: skip
    return TrainResult(
        step_losses=losses,
        epoch_losses=epoch_means(losses, start_step, order.steps_per_epoch),
        train_loss=train_loss,
        train_acc=train_acc,
        test_loss=test_loss,
        test_acc=test_acc,
        steps=end,
        data_seed=data_seed,
        seconds=time.perf_counter() - t0,
        optimizer_state=opt.state_dict(),
    )
