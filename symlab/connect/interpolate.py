"""Linear interpolation between two models, evaluated vectorised over α.

``θ(α) = (1 − α) θ_A + α θ_B`` (docs: connectivity; Frankle et al., "Linear Mode Connectivity
and the Lottery Ticket Hypothesis", ICML 2020; Ainsworth et al., "Git Re-Basin", ICLR 2023). On
CPU with data in memory each α is one forward pass per block of rows (blocks small enough for
the activations to stay in cache) of a scratch copy of the model whose parameters are rewritten
in place at each α (no parameter sets built up front); on accelerators, and for streams of
batches, all α of a chunk run as one batched pass (:func:`torch.func.vmap`, see
:mod:`symlab.connect.path_eval`). When the model's input goes straight into one ``nn.Linear``,
that layer's output at α is ``(1 − α)·(X W_Aᵀ + b_A) + α·(X W_Bᵀ + b_B)``: two products for
every α instead of one per α (equal to the plain computation up to float rounding, exact at the
endpoints). A model that is one chain of ``nn.Linear`` layers and ReLUs (:class:`symlab.nn.MLP`,
an ``nn.Sequential``, or a forward calling them in turn) runs with its ReLUs in place and
nothing else kept (:mod:`symlab.connect.chain`): the same floats at the endpoints; between them
each product goes into a reused buffer and its bias is added after it (the same function,
rounded in another order). For BatchNorm models the
running statistics of every interior α are recomputed on training data first (Jordan et al.
2023; on by default for BN models); the endpoints keep their own statistics, so the curve's
endpoints are the models' own losses.

α must lie in [0, 1]: an extrapolated point would count in the barriers. Parameters or buffers
holding NaN or infinity are refused (:class:`~symlab.errors.NonFiniteError` naming the model and
the tensor) instead of giving a NaN curve.

>>> import symlab as sl
>>> a, b = sl.nn.MLP([4, 8, 3], seed=0), sl.nn.MLP([4, 8, 3], seed=1)
>>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
>>> curve = interpolate(a, b, (x, y), n_alphas=5)
>>> len(curve.loss), curve.barrier("loss") >= 0
(5, True)
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from symlab.align.data import check_runs, copied_inputs, iter_batches, split_tensors
from symlab.connect.barrier import barrier as _barrier
from symlab.connect.bn_reset import has_batchnorm, reset_bn_stats
from symlab.connect.path_eval import (
    LossFn,
    averaged_over,
    block_rows,
    counted_rows,
    loss_terms,
    per_alpha,
    probe_model,
    stacked,
)
from symlab.errors import ArchitectureMismatchError, DataError, NonFiniteError
from symlab.progress import progress as progress_items
from symlab.progress import progress_bar

_loss_terms = loss_terms  # symlab.connect.simplex reads it here

__all__ = ["Curve", "check_same_architecture", "interpolate", "interpolate_state"]


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


def interpolate_state(
    sd_a: StateDict, sd_b: StateDict, alpha: float, *, copy_other: bool = True
) -> dict[str, torch.Tensor]:
    """``(1 − α) θ_A + α θ_B`` for floating tensors (exact at α = 0 and 1); others from A
    (copies unless ``copy_other`` is False).

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
        if a.is_floating_point():  # lerp: exact at α = 0 and 1, one pass over the tensor
            out[k] = torch.lerp(a, b.to(a.dtype), float(alpha))
        else:
            out[k] = a.clone() if copy_other else a
    return out


def _finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite: its extremes are (``aminmax`` propagates NaN),
    one reduction without the boolean tensor of ``isfinite`` (a tenth of the time)."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def _check_finite(sd: StateDict, which: str) -> None:
    for k, t in sd.items():
        if t.is_floating_point() and not _finite(t):
            raise NonFiniteError(
                f"{which} has NaN or infinite values in {k!r}; the curve would be NaN "
                "throughout. Check that checkpoint (did its training diverge?)"
            )


def _is_int(n: Any) -> bool:
    try:
        operator.index(n)
    except TypeError:
        return False
    return True


def _check_alphas(al: torch.Tensor) -> None:
    if al.ndim != 1 or len(al) == 0:
        raise DataError("alphas must be a non-empty 1-d tensor")
    bad = al[~((al >= 0) & (al <= 1))]
    if len(bad):
        raise DataError(
            f"alphas must lie in [0, 1] (0 is model_a, 1 is model_b), got {bad[:5].tolist()}: "
            "an extrapolated point would count in the barriers. Evaluate extrapolations with "
            "interpolate_state and your own loop"
        )


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
    progress: bool | None = None,
) -> Curve:
    """Evaluate the linear path from ``model_a`` to ``model_b`` on ``data``.

    Args:
        model_a, model_b: two models of one architecture (model_a's module runs every α).
        data: a :class:`symlab.data.Dataset` (evaluated on ``split``), ``(x, y)``, or an
            iterable of ``(x, y)`` batches.
        n_alphas: evenly spaced α in [0, 1] (Git Re-Basin: 25; Frankle: 30).
        alphas: explicit α instead (must include 0 and 1 for barriers).
        loss: ``"cross_entropy"``, ``"mse"`` or ``loss(outputs, targets) -> mean``; default by
            the targets' dtype. Cross-entropy is averaged as ``F.cross_entropy`` does:
            class indices, spatial targets too, with targets of -100 (its ``ignore_index``)
            left out of the loss and the accuracy.
        bn_reset: recompute BatchNorm statistics for interior α (default: iff the model has
            BatchNorm) on ``reset_data`` (default: ``data``'s train split).
        repair: REPAIR each interior α (Jordan et al. 2023; models without BatchNorm) on
            ``repair_data`` (default: ``data``'s train split); see :mod:`symlab.connect.repair`.
        batch_size: data rows per forward pass (default: all; with the loop strategy on data in
            memory on CPU, blocks whose widest activation is about 2 MiB, which stay in cache:
            0.84× the time of whole-batch passes on ``benchmarks/bench_curve.py``);
            ``chunk``: α per vmap call (default: from ``memory_budget`` bytes).
        strategy: ``"vmap"`` (all α of a chunk in one batched pass), ``"loop"`` (one
            forward per α and batch, the parameters at α written in place when α is reached,
            the first-layer shortcut of the module docstring where it applies) or
            ``"auto"``: vmap on accelerators, loop on CPU, where batched matmuls measured
            slower than sequential ones (``benchmarks/bench_curve.py``).
        progress: bars over the BatchNorm resets / REPAIRs and the evaluated α (default:
            only when stderr is a terminal; see :mod:`symlab.progress`).

    Returns:
        a :class:`Curve`.

    Raises:
        ArchitectureMismatchError: the state_dicts differ in keys or shapes.
        NonFiniteError: a parameter or buffer of either model holds NaN or infinity.
        DataError: an α outside [0, 1], fewer than two α, no data rows, no targets, targets
            that are not class indices of the models' outputs, or inputs the models do not
            take.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([3, 4, 2], seed=0), sl.nn.MLP([3, 4, 2], seed=1)
    >>> x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> curve = interpolate(a, b, (x, y), n_alphas=5)
    >>> curve.alphas.tolist(), curve.accuracy is not None
    ([0.0, 0.25, 0.5, 0.75, 1.0], True)
    """
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    check_same_architecture(sd_a, sd_b)
    _check_finite(sd_a, "model_a (A)")
    _check_finite(sd_b, "model_b (B)")
    if alphas is None and (isinstance(n_alphas, bool) or not _is_int(n_alphas) or n_alphas < 2):
        raise DataError(
            f"n_alphas must be an integer >= 2 (the two ends included), got {n_alphas!r}"
        )
    al = torch.linspace(0.0, 1.0, n_alphas) if alphas is None else torch.as_tensor(alphas)
    al = al.to(torch.float64)
    _check_alphas(al)
    if strategy not in ("auto", "vmap", "loop"):
        raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
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

    tensors = split_tensors(data, split)
    first_x = tensors[0] if tensors is not None else next(iter_batches(data, None, split))[0]
    writes = check_runs(model_a, first_x, "interpolate")  # a forward writing into its input
    with copied_inputs(model_a, writes), copied_inputs(model_b, writes):  # runs on copies
        overrides: dict[int, dict[str, torch.Tensor]] = {}
        if (do_reset and bn) or repair:
            what = "REPAIR" if repair else "BatchNorm reset"
            for i, a in enumerate(progress_items(al.tolist(), progress, f"interpolate: {what}")):
                if 0.0 < a < 1.0:
                    overrides[i] = dict(factory(a).state_dict())
        if loss is None:
            y0 = tensors[1] if tensors is not None else next(iter_batches(data, None, split))[1]
            loss = "mse" if y0 is not None and y0.is_floating_point() else "cross_entropy"
        if strategy == "auto":
            strategy = "loop" if first_x.device.type == "cpu" else "vmap"
        was_training = model_a.training
        model_a.eval()
        bar = progress_bar(len(al), progress, "interpolate")
        try:
            with torch.no_grad(), bar:
                if strategy == "loop" and tensors is not None:
                    blocks = list(iter_batches(data, len(first_x) or 1, split))
                    if not blocks or len(first_x) == 0:
                        raise DataError("interpolate got no data rows to evaluate")
                    probe = probe_model(model_a, first_x[:1])
                    bs = batch_size or block_rows(probe.row_bytes, len(first_x), first_x.device)
                    blocks = list(iter_batches(data, bs, split))
                    loss_sum, correct_sum = per_alpha(
                        model_a, sd_a, sd_b, al, overrides, blocks, loss, probe.first_linear,
                        memory_budget, bar,
                    )  # fmt: skip
                    rows = len(first_x)
                    counted = sum(counted_rows(y, loss) for _, y in blocks)
                else:
                    bs = batch_size or len(first_x)
                    row_bytes = probe_model(model_a, first_x[:1]).row_bytes
                    k_chunk = chunk or max(
                        1, min(len(al), int(memory_budget // (4 * row_bytes * bs)))
                    )
                    # every batch evaluates every α: the total is known for data in memory only
                    bar.total = len(al) * -(-len(first_x) // bs) if tensors is not None else None
                    loss_sum, correct_sum, rows, counted = stacked(
                        model_a, sd_a, sd_b, al, overrides, data, bs, split, loss, k_chunk,
                        strategy, bar,
                    )  # fmt: skip
        finally:
            model_a.train(was_training)
        counted = averaged_over("interpolate", rows, counted)
        acc = None if correct_sum is None else correct_sum / counted
        return Curve(al, loss_sum / counted, acc, do_reset and bn, label, factory)
