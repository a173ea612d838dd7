"""Evaluating a model's loss at many points of a linear path (the engine of
:func:`symlab.connect.interpolate`).

Two ways: :func:`per_alpha` (α outer, batches inner: one scratch copy of the model whose
parameters are rewritten in place at each α; data in memory, CPU) and :func:`stacked` (batches
outer, chunks of α inner on stacked parameters, batched with :func:`torch.func.vmap` on
accelerators; reads a stream of batches once). Both sum the loss and the correct predictions
per α in float64.

:class:`FirstLayer` serves an input ``nn.Linear``'s output at α from two products, since
``x W(α)ᵀ + b(α) = (1 − α)(x W_Aᵀ + b_A) + α (x W_Bᵀ + b_B)`` (equal up to float rounding,
exact at α = 0 and 1 by :func:`torch.lerp`). A chain of ``nn.Linear`` and ReLU runs with its
ReLUs in place (:mod:`symlab.connect.chain`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import vmap
from torch.nn import functional as F

from symlab.align.data import iter_batches
from symlab.connect.chain import Chain, find_chain
from symlab.errors import DataError
from symlab.stateless import call_with_state

__all__ = [
    "BLOCK_BYTES",
    "FirstLayer",
    "Probe",
    "averaged_over",
    "block_rows",
    "counted_rows",
    "loss_terms",
    "per_alpha",
    "probe_model",
    "stacked",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StateDict = Mapping[str, torch.Tensor]
Batches = list[tuple[torch.Tensor, torch.Tensor | None]]


def _stack(sd_a: StateDict, sd_b: StateDict, alphas: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for k, a in sd_a.items():
        if a.is_floating_point():
            al = alphas.to(a.dtype).reshape(-1, *([1] * a.ndim))
            out[k] = (1 - al) * a + al * sd_b[k]
        else:
            out[k] = a.expand(len(alphas), *a.shape)
    return out


#: bytes of the widest activation of one row block on CPU (about an L2 cache)
BLOCK_BYTES = 2**21


def block_rows(row_bytes: int, n: int, device: torch.device) -> int:
    """Rows per forward pass: all on accelerators; on CPU enough for about ``BLOCK_BYTES`` of
    the widest activation (at least 64 rows, at most ``n``).

    >>> block_rows(2048, 5000, torch.device("cpu")), block_rows(2048, 5000, torch.device("meta"))
    (1024, 5000)
    """
    if device.type != "cpu":
        return n
    return min(n, max(64, BLOCK_BYTES // max(row_bytes, 1)))


def loss_terms(
    out: torch.Tensor, y: torch.Tensor | None, loss: str | LossFn
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-α sums over the rows of one batch of the loss and of correct predictions
    (``out``: [k, B, ...]); a row with spatial targets counts its mean over positions. A
    cross-entropy target of :data:`IGNORE_INDEX` adds nothing to either; divide by
    :func:`counted_rows`, not by the number of rows."""
    if y is None:
        raise DataError("interpolate needs targets: pass (x, y) or a Dataset")
    k, bsz = out.shape[0], out.shape[1]
    if bsz == 0:  # an empty batch adds nothing
        zero = torch.zeros(k, dtype=torch.float64)
        return zero, None if y.is_floating_point() or out.ndim < 3 else zero.clone()
    if callable(loss):
        vals = torch.stack([torch.as_tensor(loss(o, y), dtype=torch.float64) for o in out])
        sums = vals * bsz
    elif loss == "cross_entropy":
        flat = out.reshape(k * bsz, *out.shape[2:])
        yk = y if k == 1 else y.repeat(k, *[1] * (y.ndim - 1))  # soft or spatial targets too
        if flat.ndim == 2 and not yk.is_floating_point() and _in_range(yk, flat.shape[1]):
            # −log softmax at the target without the whole log-softmax (a third of the time
            # for 10 classes); F.cross_entropy for the rest (ignore_index, soft targets, ...)
            ce = torch.logsumexp(flat, 1) - flat.gather(1, yk[:, None]).squeeze(1)
        else:
            if not yk.is_floating_point() and flat.ndim >= 2:
                _check_classes(yk, flat.shape[1])
            ce = F.cross_entropy(flat, yk, reduction="none")
        sums = ce.reshape(k, bsz, -1).double().mean(-1).sum(1)  # spatial: mean per row
    elif loss == "mse":
        d = (out - y.reshape(1, *y.shape).to(out.dtype)) ** 2
        sums = d.reshape(k, bsz, -1).mean(-1).double().sum(1)
    else:
        raise ValueError(f"loss must be 'cross_entropy', 'mse' or a callable, got {loss!r}")
    correct = None
    if not y.is_floating_point() and out.ndim >= 3:
        # classes on dim 1 of each output, as for F.cross_entropy; a row's share of correct
        # positions when the targets are spatial
        correct = (out.argmax(2) == y).double().reshape(k, bsz, -1).mean(-1).sum(1)
    return sums, correct


#: the target F.cross_entropy skips by default
IGNORE_INDEX = -100


def counted_rows(y: torch.Tensor | None, loss: str | LossFn) -> float:
    """How many rows a batch's targets count for in the mean loss and accuracy: all of them,
    except that with cross-entropy a target of :data:`IGNORE_INDEX` counts for nothing (a
    spatial row counts for its share of positions that are not skipped), so that the mean
    over a data set is F.cross_entropy's (the mean over the targets it does not skip).

    >>> counted_rows(torch.tensor([0, 2, -100, 1]), "cross_entropy")
    3.0
    >>> counted_rows(torch.tensor([[0, -100], [1, 1]]), "cross_entropy")
    1.5
    >>> counted_rows(torch.tensor([0, 2, -100, 1]), "mse")
    4.0
    """
    if y is None:
        return 0.0
    if loss != "cross_entropy" or y.is_floating_point() or len(y) == 0:
        return float(len(y))
    keep = y != IGNORE_INDEX
    if bool(keep.all()):
        return float(len(y))
    return float(keep.reshape(len(y), -1).double().mean(-1).sum())


def averaged_over(who: str, rows: int, counted: float) -> float:
    """``counted`` (the sum of :func:`counted_rows` over the data), the number a mean loss and
    accuracy divide by; a :class:`DataError` naming ``who`` when there were no rows, or when
    every target was skipped.

    >>> averaged_over("demo", 4, 3.0)
    3.0
    """
    if rows == 0:
        raise DataError(f"{who} got no data rows to evaluate")
    if counted == 0:
        raise DataError(
            f"{who}: every target is {IGNORE_INDEX} (F.cross_entropy's ignore_index), so there "
            "is no target to average the loss over; pass data with class-index targets"
        )
    return counted


def _check_classes(y: torch.Tensor, classes: int) -> None:
    """Raise :class:`DataError` for a class-index target outside ``[0, classes)`` (other than
    :data:`IGNORE_INDEX`), instead of torch's IndexError deep inside the loss."""
    bad = (y != IGNORE_INDEX) & ((y < 0) | (y >= classes))
    if bool(bad.any()):
        raise DataError(
            f"interpolate: target {int(y[bad][0])} is not a class index of the models' "
            f"{classes} outputs (0 to {classes - 1}, or {IGNORE_INDEX} for a position to "
            "skip); pass class indices, or loss= a callable for other targets"
        )


def _in_range(y: torch.Tensor, classes: int) -> bool:
    """Whether every target is a class index in [0, classes) (no ignore_index, none invalid)."""
    if len(y) == 0:
        return False
    lo, hi = torch.aminmax(y)
    return bool(lo >= 0) and bool(hi < classes)


@dataclass
class Probe:
    """What one forward pass of a single row tells: the widest activation's bytes per row, and
    the ``nn.Linear`` that reads the model's input directly (called once), if there is one."""

    row_bytes: int
    first_linear: nn.Linear | None


def probe_model(model: nn.Module, x1: torch.Tensor) -> Probe:
    """Run ``model`` once on the one-row input ``x1`` with forward hooks on every module.

    >>> import symlab as sl
    >>> net = sl.nn.MLP([3, 5, 2])
    >>> p = probe_model(net, torch.randn(1, 3))
    >>> p.row_bytes, p.first_linear is net.get_submodule("layers.0.linear")
    (20, True)
    """
    widest, calls, fed = [0], {}, []

    def hook(m: nn.Module, inputs: Any, o: Any) -> None:
        if isinstance(o, torch.Tensor):
            widest[0] = max(widest[0], o[:1].numel() * o.element_size())
        if type(m) is nn.Linear:  # exactly nn.Linear: a subclass may compute something else
            calls[id(m)] = calls.get(id(m), 0) + 1
            if inputs and inputs[0] is x1:
                fed.append(m)

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in hs:
            h.remove()
    first = fed[0] if len(fed) == 1 and calls[id(fed[0])] == 1 else None
    return Probe(widest[0], first)


class FirstLayer:
    """Serve ``layer``'s output at α from the two endpoint products of each row block.

    ``layer(x) = x Wᵀ + b`` is affine in its parameters, so at α it is
    ``lerp(x W_Aᵀ + b_A, x W_Bᵀ + b_B, α)``. The layer's ``forward`` is replaced for the
    duration (and given back by :meth:`close`); an input other than a block it was prepared
    for, or one changed in place since, gets the plain computation.
    """

    def __init__(
        self,
        layer: nn.Linear,
        names: tuple[str, str | None],
        sd_a: StateDict,
        sd_b: StateDict,
        blocks: Batches,
    ) -> None:
        self.layer = layer
        wa, wb = sd_a[names[0]], sd_b[names[0]]
        ba, bb = (None, None) if names[1] is None else (sd_a[names[1]], sd_b[names[1]])
        self.pre = {
            id(x): (x._version, F.linear(x, wa, ba), F.linear(x, wb, bb)) for x, _ in blocks
        }
        self.alpha = 0.0
        self._own = layer.__dict__.get("forward")  # an instance-level forward to give back
        self._plain = layer.forward
        layer.forward = self.forward  # type: ignore[method-assign]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre.get(id(x))
        if pre is None or pre[0] != x._version:  # another tensor, or changed in place
            return self._plain(x)
        return torch.lerp(pre[1], pre[2], self.alpha)

    def into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` written into ``out`` (a buffer the caller reuses), returned."""
        pre = self.pre.get(id(x))
        if pre is None or pre[0] != x._version:
            return out.copy_(self._plain(x))
        return torch.lerp(pre[1], pre[2], self.alpha, out=out)

    def close(self) -> None:
        if self._own is None:
            del self.layer.forward
        else:
            self.layer.forward = self._own  # type: ignore[method-assign]


def per_alpha(
    model: nn.Module,
    sd_a: StateDict,
    sd_b: StateDict,
    al: torch.Tensor,
    overrides: dict[int, dict[str, torch.Tensor]],
    blocks: Batches,
    loss: str | LossFn,
    first: nn.Linear | None,
    budget: float,
    bar: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss and correct-prediction sums at each α, α outer and batches inner (in-memory data
    on CPU): a scratch copy of the model takes the parameters at α in place, once per α;
    ``overrides`` (BatchNorm reset, REPAIR) replace the whole state at their α. The first-layer
    shortcut is used for ``first`` when no override exists and its two products fit
    ``budget`` bytes. A model that is a chain of ``nn.Linear`` and ReLU
    (:func:`symlab.connect.chain.find_chain`) runs with its ReLUs in place once its first
    block's first rows have given the plain pass's output to the bit; between the endpoints
    it runs buffered (:meth:`Chain.bind_buffered`: biases added after the products, the same
    function rounded in another order), every block into one output and one loss call per
    α. ``bar`` (a progress bar) advances once per α."""
    work = copy.deepcopy(model)
    state = work.state_dict()  # shares storage with work's parameters and buffers
    chain = find_chain(work)  # on the copy: tracing runs its forward's Python code
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None if chain else work
    buffered: Callable[..., torch.Tensor] | None = None
    serve = None
    if first is not None and not overrides:  # REPAIR / BN reset may move the first layer
        name = next(n for n, m in model.named_modules() if m is first)
        pre = f"{name}." if name else ""
        keys = (f"{pre}weight", f"{pre}bias" if first.bias is not None else None)
        rows = sum(len(x) for x, _ in blocks)
        if 2 * rows * first.out_features * 4 <= budget:
            serve = FirstLayer(work.get_submodule(name), keys, sd_a, sd_b, blocks)
    outs = y_all = None  # the buffered chain's outputs at one α and their targets, all rows
    loss_sum = torch.zeros(len(al), dtype=torch.float64)
    correct_sum: torch.Tensor | None = torch.zeros(len(al), dtype=torch.float64)
    try:
        for i, a in enumerate(al.tolist()):
            for k, t in state.items():
                if i in overrides:
                    t.copy_(overrides[i][k])
                elif t.is_floating_point():
                    torch.lerp(sd_a[k], sd_b[k].to(t.dtype), a, out=t)
            if serve is not None:
                serve.alpha = a
            if forward is None and chain is not None:  # check the chain on a few rows
                x0 = blocks[0][0]
                forward, buffered = _checked(chain, work, x0[:CHECK_ROWS], serve)
                ys = [t for _, t in blocks]
                if buffered is not None and all(t is not None for t in ys):
                    y_all = torch.cat(ys)  # type: ignore[arg-type]
                    last = work.get_submodule(chain.steps[-1][0])
                    # buffered: a 2-D output of the weights' dtype, the last Linear's width
                    outs = x0.new_empty(len(y_all), last.weight.shape[0])
            if outs is not None:  # all blocks into one output, one loss call per α
                between = buffered is not None and a not in (0.0, 1.0)
                r = 0
                for x, _ in blocks:
                    if between:  # the buffered chain: same function, rounded in another order
                        buffered(x, out=outs[r : r + len(x)])  # type: ignore[misc]
                    else:  # the endpoints: the models' own floats
                        outs[r : r + len(x)].copy_(forward(x))
                    r += len(x)
                terms = [loss_terms(outs.unsqueeze(0), y_all, loss)]
            else:
                terms = [loss_terms(forward(x).unsqueeze(0), y, loss) for x, y in blocks]
            for sums, correct in terms:
                loss_sum[i] += sums[0]
                if correct is None:
                    correct_sum = None
                elif correct_sum is not None:
                    correct_sum[i] += correct[0]
            if bar is not None:
                bar.update()
    finally:
        if serve is not None:
            serve.close()
    return loss_sum, correct_sum


#: rows on which a chain is compared with the model's own forward pass
CHECK_ROWS = 128


def _checked(
    chain: Chain, work: nn.Module, x: torch.Tensor, serve: FirstLayer | None = None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor] | None]:
    """``chain`` on ``work``, checked against ``work``'s own forward pass on ``x``: exactly
    (:meth:`Chain.bind`) if that gives ``work``'s output to the bit, else ``work`` itself;
    and buffered (:meth:`Chain.bind_buffered`, for the points between the endpoints) where
    that applies (2-D input of the weights' dtype) and agrees up to float rounding, else
    None; ``serve``'s layer then writes its output into the chain's buffer."""
    ref = work(x)
    exact = chain.bind(work)
    if not torch.equal(exact(x), ref):
        return work, None
    dtypes = {p.dtype for p in work.parameters()}
    if x.ndim != 2 or dtypes != {x.dtype} or ref.ndim != 2 or not ref.is_floating_point():
        return exact, None
    if not bool(torch.isfinite(ref).all()):  # nothing to compare a rounding with
        return exact, None
    if serve is None:
        buffered = chain.bind_buffered(work)
    else:  # the served input layer writes into the chain's buffer
        buffered = chain.bind_buffered(work, serve.layer, serve.into)
    tol = 1e-5 * float(ref.abs().max()) if ref.numel() else 0.0
    same = torch.allclose(buffered(x), ref, rtol=1e-4, atol=tol)
    return exact, buffered if same else None


def stacked(
    model: nn.Module,
    sd_a: StateDict,
    sd_b: StateDict,
    al: torch.Tensor,
    overrides: dict[int, dict[str, torch.Tensor]],
    data: Any,
    bs: int,
    split: str,
    loss: str | LossFn,
    k_chunk: int,
    strategy: str,
    bar: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None, int, float]:
    """Loss and correct-prediction sums at each α: batches outer, chunks of α inner on the
    stacked parameters (vmap on accelerators; streams of batches read once); with the number
    of rows read and the rows they count for (:func:`counted_rows`). ``bar`` (a progress bar)
    advances by the α of each chunk, batch by batch."""
    params = _stack(sd_a, sd_b, al)
    for i, sd in overrides.items():
        for k, v in sd.items():
            params[k][i] = v

    def run(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return call_with_state(model, params, (x,))

    if strategy == "vmap":
        batched = vmap(run, in_dims=(0, None))
    else:

        def batched(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            k = len(next(iter(params.values())))
            return torch.stack([run({n: v[i] for n, v in params.items()}, x) for i in range(k)])

    loss_sum = torch.zeros(len(al), dtype=torch.float64)
    correct_sum: torch.Tensor | None = torch.zeros(len(al), dtype=torch.float64)
    rows, counted = 0, 0.0
    for x, y in iter_batches(data, bs, split):
        rows += len(x)
        counted += counted_rows(y, loss)
        for s in range(0, len(al), k_chunk):
            part = {k: v[s : s + k_chunk] for k, v in params.items()}
            sums, correct = loss_terms(batched(part, x), y, loss)
            loss_sum[s : s + k_chunk] += sums
            if correct is None:
                correct_sum = None
            elif correct_sum is not None:
                correct_sum[s : s + k_chunk] += correct
            if bar is not None:
                bar.update(len(sums))
    return loss_sum, correct_sum, rows, counted
