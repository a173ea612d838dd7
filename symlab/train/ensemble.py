"""Vectorised ensembles: train N models of one architecture at once.

The N models are stacked (:class:`~symlab.train.stacked.StackedModels`, built on
:func:`torch.func.stack_module_state`), every step runs one vectorised forward/backward over all
of them — each on its own batch from its own ``data_seed`` — and one optimizer steps the stacked
tensors. SGD, Adam and AdamW act elementwise, so this is the same computation as N separate runs
of :func:`symlab.train.train` (up to float rounding), only faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from symlab.data import Dataset
from symlab.device import resolve_device
from symlab.errors import TrainingError

from .batches import BatchOrder
from .checks import build_model, check_fit, loss_kind, masked_step, per_run_loss, reset_fixed
from .config import TrainConfig, lr_factor, make_optimizer
from .loop import final_metrics, non_finite_error, step_range
from .progress import progress_bar
from .result import TrainResult, epoch_means
from .stacked import StackedModels
from .stacked_chain import ChainStep
from .stacked_linear import stacked_cross_entropy

__all__ = ["Ensemble", "train_ensemble", "train_stacked"]

log = logging.getLogger(__name__)


@dataclass
class Ensemble:
    """Trained members of :func:`train_ensemble`: ordinary modules plus their results.

    >>> import torch, symlab as sl
    >>> from torch import nn
    >>> x = torch.randn(32, 3); data = sl.data.from_tensors(x, (x[:, 0] > 0).long(), num_classes=2)
    >>> make = lambda seed: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> ens = train_ensemble(make, 2, data, TrainConfig(steps=3, batch_size=16))
    >>> len(ens.models), len(ens.test_accs)
    (2, 2)
    """

    models: list[nn.Module]
    results: list[TrainResult]
    seeds: list[int]
    data_seeds: list[int]
    method: str
    seconds: float

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.models)

    def __getitem__(self, i: int) -> nn.Module:
        return self.models[i]

    @property
    def test_accs(self) -> list[float | None]:
        """Final test accuracy of every member."""
        return [r.test_acc for r in self.results]

    def summary(self) -> str:
        """A few lines: method, time and each member's final metrics."""
        lines = [f"{len(self)} models ({self.method} path) in {self.seconds:.1f} s"]
        lines += [
            f"  seed {s}: {r.summary()}" for s, r in zip(self.seeds, self.results, strict=True)
        ]
        return "\n".join(lines)


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """:func:`per_run_loss`, with the fused kernel for class logits ``[N, B, C]``."""
    if kind == "cross_entropy" and out.ndim == 3 and y.ndim == 2:
        return stacked_cross_entropy(out, y)
    return per_run_loss(out, y, kind)


@torch.no_grad()
def _chain_step(
    chain: ChainStep,
    opt: torch.optim.Optimizer,
    frozen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> None:
    """The optimizer step after :meth:`ChainStep.loss_and_grads` (whose gradients are already
    masked): fixed entries are reset afterwards (:func:`reset_fixed`)."""
    chain.optimizer_step(opt)
    reset_fixed(frozen)


def train_stacked(
    models: Sequence[nn.Module],
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    data_seeds: Sequence[int],
    start_step: int = 0,
    stop_at: int | None = None,
    optimizer_states: Sequence[dict[str, Any]] | None = None,
    method: str = "auto",
    device: str | torch.device | None = None,
) -> list[TrainResult]:
    """Train ``models`` (one architecture) in place, all at once; one result per model.

    Member ``i`` sees the batch order of ``data_seeds[i]``; everything else is as in
    :func:`symlab.train.train`, including resuming with ``start_step``/``optimizer_states`` and
    keeping W-asymmetric fixed entries unchanged; ``device`` moves the models there first (in
    place; default: where they are). ``method``: ``"fast"`` (batched matmuls for
    Linear/activation chains; for Linear/ReLU classifiers a hand-written step without autograd,
    :class:`~symlab.train.stacked_chain.ChainStep`), ``"vmap"`` (any module) or ``"auto"``.

    >>> from symlab.data import load
    >>> ds = load("gaussian_mixture", n_train=64, n_test=32)
    >>> nets = [nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)) for _ in range(3)]
    >>> res = train_stacked(nets, ds, TrainConfig(epochs=2, batch_size=16), data_seeds=[0, 1, 2])
    >>> [r.steps for r in res]
    [8, 8, 8]
    """
    config = config or TrainConfig()
    if len(data_seeds) != len(models):
        raise TrainingError(f"got {len(data_seeds)} data_seeds for {len(models)} models")
    if device is not None:
        dev = resolve_device(device)
        for m in models:
            m.to(dev)
    first = next((p for m in models for p in m.parameters()), None)
    if first is not None and data.x_train.device != first.device:
        data = data.to(first.device)
    kind = loss_kind(config, data)
    end = step_range(config, data, start_step, stop_at)
    total = config.total_steps(data.n_train)
    check_fit(models[0], models[0], data, kind)
    stack = StackedModels(models, method, probe=data.x_train[:8])
    device = next(iter(stack.params.values())).device
    x, y = data.x_train.to(device), data.y_train.to(device)
    opt = make_optimizer(config, stack.trainable())
    if optimizer_states is not None:
        try:
            opt.load_state_dict(stack.stack_optimizer_states(optimizer_states))
        except (ValueError, KeyError) as err:
            raise TrainingError(f"optimizer_states do not fit these models: {err}") from None
    frozen = stack.frozen_entries()
    chain = ChainStep.build(stack, kind, data.x_train[:8].to(device))
    order = BatchOrder(data.n_train, config.batch_size, data_seeds, config.drop_last)
    losses = torch.empty(end - start_step, stack.n)
    t0 = time.perf_counter()
    for m in models:
        m.train()
    try:
        with progress_bar(end - start_step, config.progress, f"train x{stack.n}") as bar:
            for step in range(start_step, end):
                idx = order.indices(step).to(device)
                for group in opt.param_groups:
                    group["lr"] = config.lr * lr_factor(config, step, total)
                if chain is not None:  # gradients straight into the persistent .grad
                    member_loss = chain.loss_and_grads(*chain.batch(x, y, idx))
                else:
                    flat = idx.flatten()
                    xb = x.index_select(0, flat).view(*idx.shape, *x.shape[1:])
                    yb = y.index_select(0, flat).view(*idx.shape, *y.shape[1:])
                    member_loss = _loss(stack.forward(xb), yb, kind)
                if not bool(torch.isfinite(member_loss).all()):
                    bad = [int(i) for i in (~torch.isfinite(member_loss)).nonzero().flatten()]
                    who = f"models {bad}, data_seeds {[data_seeds[i] for i in bad]}"
                    raise non_finite_error(step, total, member_loss.detach(), who)
                if chain is not None:
                    _chain_step(chain, opt, frozen)
                else:
                    masked_step(opt, member_loss.sum(), frozen)
                losses[step - start_step] = member_loss.detach()
                bar.update()
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{float(member_loss.detach().mean()):.4f}")
    finally:
        stack.write_back()
        if chain is not None:
            chain.release()
    seconds = time.perf_counter() - t0
    log.info("trained %d models (%s) for %d steps in %.1f s", stack.n, stack.method,
             end - start_step, seconds)  # fmt: skip
    opt_states = stack.unstack_optimizer_state(opt.state_dict())
    results = []
    for i, model in enumerate(models):
        train_loss, train_acc, test_loss, test_acc = final_metrics(model, data, kind)
        results.append(
            TrainResult(
                step_losses=losses[:, i].clone(),
                epoch_losses=epoch_means(losses[:, i], start_step, order.steps_per_epoch),
                train_loss=train_loss,
                train_acc=train_acc,
                test_loss=test_loss,
                test_acc=test_acc,
                steps=end,
                data_seed=int(data_seeds[i]),
                seconds=seconds,
                optimizer_state=opt_states[i],
                method=stack.method,
            )
        )
    return results


def train_ensemble(
    make_model: Callable[[int], nn.Module],
    seeds: int | Sequence[int],
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    data_seeds: Sequence[int] | None = None,
    method: str = "auto",
    device: str | torch.device | None = None,
) -> Ensemble:
    """Build ``make_model(seed)`` for every seed and train them all at once.

    ``seeds`` is a list of init seeds or a count ``n`` (seeds ``0..n-1``). Each model is built
    with torch's global generator seeded from its seed (:func:`build_model`), so factories that
    rely on default initialisation are reproducible. ``data_seeds`` (default: the init seeds)
    fix each member's batch order; ``device`` is where they train (default: the CPU, where
    they are built). The result equals training each model with
    :func:`symlab.train.train` (same seeds) up to float rounding.

    >>> from symlab.data import load
    >>> ds = load("gaussian_mixture", n_train=64, n_test=32)
    >>> ens = train_ensemble(
    ...     lambda s: nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)),
    ...     seeds=4, data=ds, config=TrainConfig(epochs=2, batch_size=16))
    >>> len(ens), ens.method
    (4, 'fast')
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise TrainingError("seeds is empty: pass a count >= 1 or a list of seeds")
    dseeds = seed_list if data_seeds is None else [int(s) for s in data_seeds]
    t0 = time.perf_counter()
    models = [build_model(make_model, s) for s in seed_list]
    results = train_stacked(models, data, config, data_seeds=dseeds, method=method, device=device)
    used = results[0].method
    return Ensemble(models, results, seed_list, dseeds, used, time.perf_counter() - t0)
