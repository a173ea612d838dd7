"""Linear interpolation between two models, evaluated vectorised over α.

``θ(α) = (1 − α) θ_A + α θ_B`` (docs: connectivity). All α of a chunk run as one batched forward
pass (:func:`torch.func.functional_call` under :func:`torch.func.vmap`); chunks over α and over
data rows bound the memory. For BatchNorm models the running statistics of every interior α are
recomputed on training data first (Jordan et al. 2023; on by default for BN models); the
endpoints keep their own statistics, so the curve's endpoints are the models' own losses.

>>> import symlab as sl
>>> a, b = sl.nn.MLP([4, 8, 3], seed=0), sl.nn.MLP([4, 8, 3], seed=1)
>>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
>>> curve = interpolate(a, b, (x, y), n_alphas=5)
>>> len(curve.loss), curve.barrier("loss") >= 0
(5, True)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from symlab.align.data import iter_batches, split_tensors
from symlab.connect.barrier import barrier as _barrier
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.errors import ArchitectureMismatchError, DataError

__all__ = ["Curve", "check_same_architecture", "interpolate", "interpolate_state"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True, eq=False)
class Curve:
    """Loss (and accuracy) along a path between two models.

    Attributes:
        alphas: the path positions, 0 (model A) to 1 (model B).
        loss: mean loss at each α (non-finite values are kept, not raised).
        accuracy: classification accuracy at each α (None for regression losses).
        bn_reset: whether BatchNorm statistics were recomputed for interior α.
        label: a name for plots.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> curve = interpolate(a, b, (x, y), n_alphas=5)
    >>> tuple(curve.alphas.shape), tuple(curve.loss.shape), curve.barrier("loss") >= 0
    ((5,), (5,), True)
    """

    alphas: torch.Tensor
    loss: torch.Tensor
    accuracy: torch.Tensor | None = None
    bn_reset: bool = False
    label: str = ""
    _factory: Callable[[float], nn.Module] | None = field(default=None, repr=False)

    def barrier(self, kind: str = "loss") -> float:
        """A named barrier: ``"loss"``, ``"weighted"``, ``"error"`` or
        ``"relative_accuracy_drop"`` (see :mod:`symlab.connect.barrier`)."""
        return _barrier(kind, self.alphas, self.loss, self.accuracy)

    @property
    def nonfinite_alphas(self) -> torch.Tensor:
        """The α where the loss is NaN or infinite (empty when the path is finite)."""
        return self.alphas[~torch.isfinite(self.loss)]

    def model_at(self, alpha: float) -> nn.Module:
        """The model at ``alpha`` (a fresh copy; BatchNorm statistics reset as on the curve)."""
        if self._factory is None:
            raise DataError("this curve was built from values only; it has no models")
        return self._factory(float(alpha))

    def plot(self, ax: Any = None, metric: str = "loss", **kwargs: Any) -> Any:
        """Plot ``metric`` (``"loss"``, ``"accuracy"`` or ``"error"``) against α; returns the
        matplotlib axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4, 3))
        if metric == "loss":
            y = self.loss
        elif self.accuracy is None:
            raise DataError(f"this curve has no accuracies to plot as {metric!r}")
        else:
            y = self.accuracy if metric == "accuracy" else 1.0 - self.accuracy
        kwargs.setdefault("label", self.label or None)
        ax.plot(self.alphas.tolist(), y.tolist(), marker="o", ms=3, **kwargs)
        ax.set_xlabel("α")
        ax.set_ylabel(metric)
        if kwargs["label"]:
            ax.legend()
        return ax


def check_same_architecture(sd_a: StateDict, sd_b: StateDict) -> None:
    """Raise :class:`ArchitectureMismatchError` naming the first differing parameter.

    >>> import symlab as sl
    >>> sd = sl.nn.MLP([3, 4, 2]).state_dict()
    >>> check_same_architecture(sd, sl.nn.MLP([3, 4, 2], seed=1).state_dict())
    >>> check_same_architecture(sd, sl.nn.MLP([3, 5, 2]).state_dict())
    Traceback (most recent call last):
        ...
    symlab.errors.ArchitectureMismatchError: parameter layers.0.linear.weight has shape (4, 3) ...
    """
    missing, extra = [k for k in sd_a if k not in sd_b], [k for k in sd_b if k not in sd_a]
    if missing or extra:
        raise ArchitectureMismatchError(
            f"the models have different parameters: only in model_a {missing[:5]}, only in "
            f"model_b {extra[:5]}"
        )
    for k in sd_a:
        if sd_a[k].shape != sd_b[k].shape:
            raise ArchitectureMismatchError(
                f"parameter {k} has shape {tuple(sd_a[k].shape)} in model_a but "
                f"{tuple(sd_b[k].shape)} in model_b"
            )


def interpolate_state(sd_a: StateDict, sd_b: StateDict, alpha: float) -> dict[str, torch.Tensor]:
    """``(1 − α) θ_A + α θ_B`` for floating tensors (exact at α = 0 and 1); others from A.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> sd_a, sd_b = a.state_dict(), b.state_dict()
    >>> mid = interpolate_state(sd_a, sd_b, 0.5)
    >>> torch.allclose(mid["head.bias"], (sd_a["head.bias"] + sd_b["head.bias"]) / 2)
    True
    >>> all(torch.equal(interpolate_state(sd_a, sd_b, 0.0)[k], sd_a[k]) for k in sd_a)
    True
    """
    out = {}
    for k, a in sd_a.items():
        b = sd_b[k]
        out[k] = (1 - alpha) * a + alpha * b if a.is_floating_point() else a.clone()
    return out


def _stack(sd_a: StateDict, sd_b: StateDict, alphas: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for k, a in sd_a.items():
        if a.is_floating_point():
            al = alphas.to(a.dtype).reshape(-1, *([1] * a.ndim))
            out[k] = (1 - al) * a + al * sd_b[k]
        else:
            out[k] = a.expand(len(alphas), *a.shape)
    return out


def _loss_terms(
    out: torch.Tensor, y: torch.Tensor | None, loss: str | LossFn
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-α sums of the loss and of correct predictions over one batch (``out``: [k, B, ...])."""
    if y is None:
        raise DataError("interpolate needs targets: pass (x, y) or a Dataset")
    k, bsz = out.shape[0], out.shape[1]
    if callable(loss):
        vals = torch.stack([torch.as_tensor(loss(o, y), dtype=torch.float64) for o in out])
        sums = vals * bsz
    elif loss == "cross_entropy":
        flat = out.reshape(k * bsz, *out.shape[2:])
        ce = F.cross_entropy(flat, y.repeat(k), reduction="none")
        sums = ce.reshape(k, -1).double().sum(1)
    elif loss == "mse":
        d = (out - y.reshape(1, *y.shape).to(out.dtype)) ** 2
        sums = d.reshape(k, bsz, -1).mean(-1).double().sum(1)
    else:
        raise ValueError(f"loss must be 'cross_entropy', 'mse' or a callable, got {loss!r}")
    correct = None
    if not y.is_floating_point() and out.ndim >= 3:
        correct = (out.argmax(-1) == y).double().sum(-1)
        correct = correct.reshape(k, -1).sum(1)
    return sums, correct


def _default_chunk(model: nn.Module, x: torch.Tensor, n_alphas: int, budget: float) -> int:
    """α per vmap call so that the widest activation of all α and rows fits ``budget`` bytes."""
    widest = [0]

    def hook(_m: nn.Module, _i: Any, o: Any) -> None:
        if isinstance(o, torch.Tensor):
            widest[0] = max(widest[0], o[:1].numel() * o.element_size())

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hs:
            h.remove()
    per_alpha = 4 * widest[0] * len(x)  # a few live activations per α
    return max(1, min(n_alphas, int(budget // max(per_alpha, 1))))


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    n_alphas: int = 25,
    *,
    alphas: torch.Tensor | None = None,
    loss: str | LossFn | None = None,
    split: str = "test",
    bn_reset: bool | None = None,
    reset_data: Any = None,
    repair: bool = False,
    repair_data: Any = None,
    batch_size: int | None = None,
    chunk: int | None = None,
    memory_budget: float = 2**30,
    strategy: str = "auto",
    label: str = "",
) -> Curve:
    """Evaluate the linear path from ``model_a`` to ``model_b`` on ``data``.

    Args:
        model_a, model_b: two models of one architecture (model_a's module runs every α).
        data: a :class:`symlab.data.Dataset` (evaluated on ``split``), ``(x, y)``, or an
            iterable of ``(x, y)`` batches.
        n_alphas: evenly spaced α in [0, 1] (Git Re-Basin: 25; Frankle: 30).
        alphas: explicit α instead (must include 0 and 1 for barriers).
        loss: ``"cross_entropy"``, ``"mse"`` or ``loss(outputs, targets) -> mean``; default by
            the targets' dtype.
        bn_reset: recompute BatchNorm statistics for interior α (default: iff the model has
            BatchNorm) on ``reset_data`` (default: ``data``'s train split).
        repair: REPAIR each interior α (Jordan et al. 2023; models without BatchNorm) on
            ``repair_data`` (default: ``data``'s train split); see :mod:`symlab.connect.repair`.
        batch_size: data rows per forward pass (default: all); ``chunk``: α per vmap call
            (default: from ``memory_budget`` bytes).
        strategy: ``"vmap"`` (all α of a chunk in one batched pass), ``"loop"`` (one
            ``functional_call`` per α on the stacked parameters, no state_dict loading) or
            ``"auto"``: vmap on accelerators, loop on CPU, where batched matmuls measured
            slower than sequential ones (``benchmarks/bench_curve.py``).

    Returns:
        a :class:`Curve`.

    Raises:
        ArchitectureMismatchError: the state_dicts differ in keys or shapes.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> curve = interpolate(a, b, (x, y), n_alphas=5)
    >>> curve.alphas.tolist(), curve.accuracy is not None
    ([0.0, 0.25, 0.5, 0.75, 1.0], True)
    """
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    check_same_architecture(sd_a, sd_b)
    al = torch.linspace(0.0, 1.0, n_alphas) if alphas is None else torch.as_tensor(alphas)
    al = al.to(torch.float64)
    if al.ndim != 1 or len(al) == 0:
        raise DataError("alphas must be a non-empty 1-d tensor")
    bn = has_batchnorm(model_a)
    do_reset = bn if bn_reset is None else bool(bn_reset)
    fixed_data = data if reset_data is None else reset_data
    fix_data = data if repair_data is None else repair_data

    def factory(alpha: float) -> nn.Module:
        m = copy.deepcopy(model_a)
        m.load_state_dict(interpolate_state(sd_a, sd_b, alpha))
        m.eval()
        if 0.0 < alpha < 1.0:
            if repair:
                from symlab.connect.repair import repair as _repair

                m = _repair(m, [model_a, model_b], [1 - alpha, alpha], fix_data)
            elif do_reset and bn:
                reset_bn_stats(m, fixed_data)
        return m

    stacked = _stack(sd_a, sd_b, al)
    if (do_reset and bn) or repair:
        for i, a in enumerate(al.tolist()):
            if 0.0 < a < 1.0:
                for k, v in factory(a).state_dict().items():
                    stacked[k][i] = v
    tensors = split_tensors(data, split)
    first_x = tensors[0] if tensors is not None else next(iter_batches(data, None, split))[0]
    if loss is None:
        y0 = tensors[1] if tensors is not None else next(iter_batches(data, None, split))[1]
        loss = "mse" if y0 is not None and y0.is_floating_point() else "cross_entropy"
    bs = batch_size or len(first_x)
    k_chunk = chunk or _default_chunk(model_a, first_x[:bs], len(al), memory_budget)
    was_training = model_a.training
    model_a.eval()

    def run(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(model_a, params, (x,))

    if strategy == "auto":
        strategy = "loop" if first_x.device.type == "cpu" else "vmap"
    if strategy == "vmap":
        batched = vmap(run, in_dims=(0, None))
    elif strategy == "loop":

        def batched(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            k = len(next(iter(params.values())))
            return torch.stack([run({n: v[i] for n, v in params.items()}, x) for i in range(k)])

    else:
        raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
    loss_sum = torch.zeros(len(al), dtype=torch.float64)
    correct_sum: torch.Tensor | None = torch.zeros(len(al), dtype=torch.float64)
    rows = 0
    try:
        with torch.no_grad():
            for x, y in iter_batches(data, bs, split):
                rows += len(x)
                for s in range(0, len(al), k_chunk):
                    part = {k: v[s : s + k_chunk] for k, v in stacked.items()}
                    sums, correct = _loss_terms(batched(part, x), y, loss)
                    loss_sum[s : s + k_chunk] += sums
                    if correct is None:
                        correct_sum = None
                    elif correct_sum is not None:
                        correct_sum[s : s + k_chunk] += correct
    finally:
        model_a.train(was_training)
    if rows == 0:
        raise DataError("interpolate got no data rows to evaluate")
    acc = None if correct_sum is None else correct_sum / rows
    return Curve(al, loss_sum / rows, acc, do_reset and bn, label, factory)
