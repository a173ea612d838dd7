"""The :class:`Dataset` container: train/test tensors plus what they mean.

Modelled on nfn's frozen data specs: small, immutable, typed. Every loader in :mod:`symlab.data`
returns one, and :func:`from_tensors` wraps tensors of your own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from symlab.errors import DataError, NonFiniteError

__all__ = ["TASKS", "Dataset", "Task", "from_tensors"]

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test splits of one data set, with its task and provenance.

    Inputs are float tensors with one row per example (``x_train[i]`` is one input of shape
    :attr:`input_shape`). Classification labels are ``int64`` of shape ``[n]`` in
    ``[0, num_classes)``; regression targets are float of shape ``[n, output_dim]``.

    Attributes:
        name: the registered name (or ``"custom"``).
        x_train, y_train, x_test, y_test: the tensors (a split may have zero rows).
        task: ``"classification"`` or ``"regression"``.
        num_classes: number of classes (classification only).
        seed: the seed the data were generated with (``None`` for fixed data).
        options: the options the loader was called with, defaults filled in.
        meta: extra data of the generator (teacher network, embedding, latents ...).

    >>> ds = from_tensors(torch.zeros(4, 3), torch.tensor([0, 1, 1, 0]))
    >>> ds.task, ds.num_classes, ds.input_shape
    ('classification', 2, (3,))
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: Task
    num_classes: int | None = None
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"task must be one of {list(TASKS)}, got {self.task!r}")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
                raise DataError(f"x_{split} and y_{split} must be torch tensors")
            if x.ndim < 2 or not x.is_floating_point():
                raise DataError(
                    f"x_{split} must be a float tensor [n, *input_shape], got dtype {x.dtype} "
                    f"and shape {tuple(x.shape)}"
                )
            if len(x) != len(y):
                raise DataError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteError(f"x_{split} of data set {self.name!r} contains NaN or inf")
            self._check_targets(split, y)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"train inputs have shape {tuple(self.x_train.shape[1:])} but test inputs "
                f"{tuple(self.x_test.shape[1:])}"
            )

    def _check_targets(self, split: str, y: torch.Tensor) -> None:
        if self.task == "regression":
            if y.ndim != 2 or not y.is_floating_point():
                raise DataError(
                    f"regression targets y_{split} must be float [n, output_dim], got dtype "
                    f"{y.dtype} and shape {tuple(y.shape)}"
                )
            if not bool(torch.isfinite(y).all()):
                raise NonFiniteError(f"y_{split} of data set {self.name!r} contains NaN or inf")
            return
        if y.ndim != 1 or y.dtype != torch.int64:
            raise DataError(
                f"classification labels y_{split} must be int64 [n], got dtype {y.dtype} and "
                f"shape {tuple(y.shape)}"
            )
        if self.num_classes is None or self.num_classes < 1:
            raise DataError("classification data need num_classes >= 1")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise DataError(
                f"labels y_{split} lie in [{int(y.min())}, {int(y.max())}] but must lie in "
                f"[0, {self.num_classes - 1}] for num_classes={self.num_classes}"
            )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example."""
        return tuple(self.x_train.shape[1:])

    @property
    def output_dim(self) -> int:
        """Number of model outputs the data need: classes, or regression target width."""
        if self.task == "classification":
            assert self.num_classes is not None
            return self.num_classes
        return int(self.y_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return len(self.x_test)

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``split`` (``"train"`` or ``"test"``), refusing an empty split with a
        :class:`DataError` that says how to get one.

        >>> ds = from_tensors(torch.zeros(4, 3), torch.tensor([0, 1, 1, 0]))
        >>> [tuple(t.shape) for t in ds.tensors("train")]
        [(4, 3), (4,)]
        >>> try:
        ...     ds.tensors("test")
        ... except DataError as err:
        ...     print(str(err)[:58])
        data set 'custom' has no test examples: pass x_test= and y
        """
        if split not in ("train", "test"):
            raise DataError(f"split must be 'train' or 'test', got {split!r}")
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        if len(x) == 0:
            how = (
                "pass x_test= and y_test= to from_tensors (without them the test split is "
                "empty), load the data with n_test > 0, or use split='train'"
                if split == "test"
                else "give it training examples"
            )
            raise DataError(f"data set {self.name!r} has no {split} examples: {how}")
        return x, y

    def to(self, device: torch.device | str) -> Dataset:
        """The same data on another device."""
        t = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return replace(self, **t)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` training and ``n_test`` test examples (for quick tests)."""
        a = self.n_train if n_train is None else n_train
        b = self.n_test if n_test is None else n_test
        if not (0 < a <= self.n_train and 0 <= b <= self.n_test):
            raise DataError(
                f"subset sizes must satisfy 0 < n_train <= {self.n_train} and "
                f"0 <= n_test <= {self.n_test}, got n_train={a}, n_test={b}"
            )
        return replace(
            self,
            x_train=self.x_train[:a],
            y_train=self.y_train[:a],
            x_test=self.x_test[:b],
            y_test=self.y_test[:b],
        )

    def fingerprint(self) -> str:
        """SHA-256 of the four tensors (bytes, dtypes and shapes): equal iff the data are."""
        h = hashlib.sha256()
        for k in ("x_train", "y_train", "x_test", "y_test"):
            t = getattr(self, k).detach().cpu().contiguous()
            h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        classes = f", num_classes={self.num_classes}" if self.task == "classification" else ""
        return (
            f"Dataset({self.name!r}, {self.task}{classes}, seed={self.seed}, "
            f"train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)})"
        )


def from_tensors(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    *,
    task: Task | None = None,
    num_classes: int | None = None,
    name: str = "custom",
) -> Dataset:
    """Wrap your own tensors as a :class:`Dataset`.

    The task is inferred from the label dtype when not given (integer → classification, float →
    regression); ``num_classes`` defaults to one more than the largest label. 1-D regression
    targets become ``[n, 1]``. Without test tensors the test split is empty.

    >>> ds = from_tensors(torch.randn(8, 2), torch.randn(8))
    >>> ds.task, tuple(ds.y_train.shape), ds.n_test
    ('regression', (8, 1), 0)
    """
    if (x_test is None) != (y_test is None):
        raise DataError("give both x_test and y_test, or neither")
    if x_test is None or y_test is None:
        x_test, y_test = x_train[:0], y_train[:0]
    if task is None:
        task = "regression" if y_train.is_floating_point() else "classification"
    if task == "regression":
        y_train = y_train.unsqueeze(1) if y_train.ndim == 1 else y_train
        y_test = y_test.unsqueeze(1) if y_test.ndim == 1 else y_test
    elif num_classes is None and len(y_train):
        top = int(y_train.max()) if not len(y_test) else max(int(y_train.max()), int(y_test.max()))
        num_classes = top + 1
    return Dataset(name, x_train, y_train, x_test, y_test, task=task, num_classes=num_classes)
