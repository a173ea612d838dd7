"""Quadratic Bézier curves between two models, trained to stay in low loss.

Follows Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss Surfaces, Mode Connectivity, and
Fast Ensembling of DNNs" (NeurIPS 2018): ``θ(t) = (1 − t)² θ_A + 2t(1 − t) θ_C + t² θ_B`` with
the endpoints fixed and the control point ``θ_C`` (initialised at the midpoint) trained to
minimise ``E_{t ~ U(0, 1)} L(θ(t))`` — one uniform ``t`` per minibatch, Adam. The result is a
:class:`BezierCurve`, a :class:`~symlab.connect.Curve` (``alphas`` are the curve parameter
``t``; barriers, ``model_at`` and ``plot`` work as for linear paths), so curved and linear
paths compare side by side. Trainable parameters are curved; buffers (BatchNorm statistics)
are interpolated linearly and, for BatchNorm models, recomputed at every evaluated ``t``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from symlab.align.data import iter_batches, split_tensors
from symlab.align.ste import _loss_fn
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.connect.interpolate import Curve, _loss_terms, check_same_architecture
from symlab.connect.path_eval import averaged_over, counted_rows
from symlab.errors import DataError
from symlab.seeding import generator
from symlab.stateless import call_with_state

__all__ = ["BezierCurve", "bezier_curve", "bezier_state"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class BezierCurve(Curve):
    """A :class:`Curve` along a trained quadratic Bézier path.

    Extra attributes: ``control`` (the trained ``θ_C``, parameter name → tensor) and
    ``train_loss`` (the minibatch loss at each training step).

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> curve = bezier_curve(a, b, (x, y), steps=5, n_alphas=3)
    >>> tuple(curve.alphas.shape), len(curve.train_loss), set(curve.control) == set(a.state_dict())
    ((3,), 5, True)
    """

    control: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    train_loss: list[float] = field(default_factory=list, repr=False)


def bezier_state(
    sd_a: dict[str, torch.Tensor],
    sd_b: dict[str, torch.Tensor],
    control: dict[str, torch.Tensor],
    t: float,
) -> dict[str, torch.Tensor]:
    """``θ(t)`` for the parameters in ``control``; other floating tensors linear in ``t``.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> sd_a, sd_b = a.state_dict(), b.state_dict()
    >>> control = {"head.bias": torch.zeros(2)}
    >>> end = bezier_state(sd_a, sd_b, control, 1.0)
    >>> all(torch.allclose(end[k], sd_b[k]) for k in sd_b)
    True
    """
    out = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        if k in control:
            out[k] = (1 - t) ** 2 * a + 2 * t * (1 - t) * control[k] + t**2 * b
        elif a.is_floating_point():
            out[k] = (1 - t) * a + t * b
        else:
            out[k] = a
    return out


def bezier_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    *,
    steps: int = 500,
    lr: float = 1e-2,
    batch_size: int = 128,
    n_alphas: int = 25,
    loss: str | LossFn | None = None,
    train_split: str = "train",
    split: str = "test",
    seed: int = 0,
    label: str = "Bézier",
) -> BezierCurve:
    """Train a quadratic Bézier curve from ``model_a`` to ``model_b`` and evaluate it.

    Args:
        model_a, model_b: two models of one architecture (aligned or not).
        data: a :class:`symlab.data.Dataset` or ``(x, y)``; trained on ``train_split``,
            evaluated on ``split`` (a tuple serves both).
        steps, lr, batch_size: Adam steps on ``θ_C``, its learning rate and minibatch rows.
        n_alphas: evenly spaced ``t`` at which the curve is evaluated.
        loss: ``"cross_entropy"``, ``"mse"`` or a callable (default by the targets' dtype).
        seed: minibatch and ``t`` sampling.

    Returns:
        a :class:`BezierCurve`.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> curve = bezier_curve(a, b, (x, y), steps=5, n_alphas=3)  # steps=500 by default
    >>> curve.alphas.tolist(), curve.barrier("loss") >= 0
    ([0.0, 0.5, 1.0], True)
    """
    sd_a = {k: v.detach() for k, v in model_a.state_dict().items()}
    sd_b = {k: v.detach() for k, v in model_b.state_dict().items()}
    check_same_architecture(sd_a, sd_b)
    tensors = split_tensors(data, train_split)
    if tensors is None or tensors[1] is None or len(tensors[0]) == 0:
        raise DataError("bezier_curve needs in-memory training data: a Dataset or (x, y)")
    x_tr, y_tr = tensors
    fn = _loss_fn(y_tr, loss)
    names = [n for n, p in model_a.named_parameters() if p.is_floating_point()]
    control = {n: (0.5 * (sd_a[n] + sd_b[n])).clone().requires_grad_(True) for n in names}
    opt = torch.optim.Adam(control.values(), lr=lr)
    gen = generator(seed)
    bn = has_batchnorm(model_a)
    net = copy.deepcopy(model_a).train(bn)  # BatchNorm: batch statistics while training
    history = []
    for _ in range(steps):
        t = float(torch.rand((), generator=gen))
        idx = torch.randint(0, len(x_tr), (min(batch_size, len(x_tr)),), generator=gen)
        state = bezier_state(sd_a, sd_b, control, t)
        state = {k: (v.clone() if k not in control else v) for k, v in state.items()}
        value = fn(call_with_state(net, state, (x_tr[idx],)), y_tr[idx])
        opt.zero_grad()
        value.backward()
        opt.step()
        history.append(float(value.detach()))
    theta_c = {n: v.detach().clone() for n, v in control.items()}

    def factory(t: float) -> nn.Module:
        m = copy.deepcopy(model_a)
        m.load_state_dict(bezier_state(sd_a, sd_b, theta_c, t))
        if bn and 0.0 < t < 1.0:
            reset_bn_stats(m, data)
        return m.eval()

    ts = torch.linspace(0.0, 1.0, n_alphas, dtype=torch.float64)
    losses, accs = [], []
    for t in ts.tolist():
        m = factory(t)
        total, correct, rows, counted = 0.0, 0.0, 0, 0.0
        with torch.no_grad():
            for x, y in iter_batches(data, None, split):
                name = (
                    loss
                    if loss is not None
                    else ("mse" if y is not None and y.is_floating_point() else "cross_entropy")
                )
                out = m(x.clone())  # a copy: a forward may write into its input
                sums, corr = _loss_terms(out[None], y, name)
                total += float(sums[0])
                correct = None if corr is None or correct is None else correct + float(corr[0])
                rows += len(x)
                counted += counted_rows(y, name)
        counted = averaged_over("bezier_curve", rows, counted)
        losses.append(total / counted)
        accs.append(None if correct is None else correct / counted)
    acc = None if any(a is None for a in accs) else torch.tensor(accs, dtype=torch.float64)
    return BezierCurve(
        ts, torch.tensor(losses, dtype=torch.float64), acc, bn, label, factory, theta_c, history
    )
