"""Batches from the data forms alignment and interpolation accept.

``data`` may be a :class:`symlab.data.Dataset` (its ``split``), a tensor of inputs, a tuple
``(x,)`` or ``(x, y)`` of tensors, or any iterable of such batches (a ``DataLoader``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from symlab.errors import DataError
from symlab.modes import eval_mode

__all__ = ["check_runs", "copied_inputs", "iter_batches", "num_rows", "split_tensors"]


def split_tensors(data: Any, split: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(x, y)`` tensors held in memory, or None when ``data`` is a stream of batches."""
    if callable(getattr(data, "tensors", None)):  # a symlab Dataset: refuses an empty split
        return data.tensors(split)
    if hasattr(data, "x_train") and hasattr(data, "x_test"):
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        return getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if isinstance(data, torch.Tensor):
        return data, None
    if isinstance(data, tuple) and data and all(isinstance(t, torch.Tensor) for t in data):
        if len(data) > 2:
            raise DataError(f"expected (x,) or (x, y), got a tuple of {len(data)} tensors")
        x, y = data[0], (data[1] if len(data) == 2 else None)
        if y is not None and len(y) != len(x):
            raise DataError(f"x has {len(x)} rows but y has {len(y)}")
        return x, y
    return None


def num_rows(data: Any, split: str = "train") -> int | None:
    """Number of examples when known without iterating."""
    t = split_tensors(data, split)
    return None if t is None else len(t[0])


def iter_batches(
    data: Any, batch_size: int | None = None, split: str = "train"
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x, y)`` batches (``y`` None when there are no targets)."""
    t = split_tensors(data, split)
    if t is not None:
        x, y = t
        if x.ndim < 1 or not x.is_floating_point():
            raise DataError(f"inputs must be a float tensor [n, ...], got {x.dtype} {x.shape}")
        bs = len(x) if batch_size is None else max(1, int(batch_size))
        for i in range(0, len(x), bs):
            yield x[i : i + bs], (None if y is None else y[i : i + bs])
        return
    try:
        it = iter(data)
    except TypeError:
        raise DataError(
            f"cannot read batches from {type(data).__name__}; pass a symlab Dataset, a tensor, "
            "a tuple (x, y) or an iterable of batches"
        ) from None
    for batch in it:
        if isinstance(batch, torch.Tensor):
            yield batch, None
        elif isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
            yield batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            raise DataError(f"a batch must be a tensor or (x, y), got {type(batch).__name__}")


def check_runs(model: nn.Module, x: torch.Tensor, who: str) -> bool:
    """Run ``model`` (in eval mode, without gradients) on a copy of the first rows of ``x``:
    data the model does not take are a :class:`DataError` naming the shapes, not a raw torch
    error deep inside the computation. Returns whether the model writes into its input (its
    forward changes the tensor it is given in place, e.g. ``x.sub_(mean)``): then run it on
    copies (:func:`copied_inputs`), or every pass over the same data sees another input.

    >>> net = nn.Linear(3, 2)
    >>> check_runs(net, torch.randn(5, 3), "demo")
    False
    >>> try:
    ...     check_runs(net, torch.randn(5, 4), "demo")
    ... except DataError as err:
    ...     print(str(err)[:53])
    demo: inputs of shape (5, 4) torch.float32 do not run
    """
    probe = x[:2].clone()
    version = probe._version
    try:
        with torch.no_grad(), eval_mode(model):
            model(probe)
        return probe._version != version
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        cause = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(
            f"{who}: inputs of shape {tuple(x.shape)} {x.dtype} do not run through "
            f"{type(model).__name__} ({type(exc).__name__}: {cause}); pass data whose inputs "
            "the models take (the shape they were built or trained for)"
        ) from None


@contextmanager
def copied_inputs(model: nn.Module, on: bool = True) -> Iterator[None]:
    """While the body runs, ``model`` (and copies of it made inside) is called on copies of
    its tensor arguments, so that a forward writing into its input leaves the caller's data
    as it was; nothing changes when ``on`` is False.

    >>> class Centring(nn.Module):
    ...     def forward(self, x):
    ...         return x.sub_(x.mean())
    >>> x, m = torch.arange(3.0), Centring()
    >>> with copied_inputs(m):
    ...     y = m(x)
    >>> x.tolist(), y.tolist()
    ([0.0, 1.0, 2.0], [-1.0, 0.0, 1.0])
    """
    if not on:
        yield
        return

    def copy(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return pytree.tree_map(
            lambda t: t.clone() if isinstance(t, torch.Tensor) else t, (args, kwargs)
        )

    handle = model.register_forward_pre_hook(copy, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
