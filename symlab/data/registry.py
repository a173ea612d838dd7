"""Registry of data set builders and :func:`load`, the one way to get a data set by name.

The pattern follows mergekit's ``easy_define``: a decorator registers a builder and validates its
signature once, so :func:`load` can check a caller's options against it and answer a typo with
the list of valid choices instead of a ``TypeError`` from deep inside.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from symlab.errors import DataError

from .dataset import Dataset

__all__ = ["available", "load", "register"]

Builder = Callable[..., Dataset]


@dataclass(frozen=True)
class _Entry:
    builder: Builder
    default_seed: int
    options: dict[str, Any]  # option name -> default


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, *, default_seed: int = 0) -> Callable[[Builder], Builder]:
    """Register ``builder(seed, *, option=default, ...) -> Dataset`` under ``name``.

    The builder's first parameter must be ``seed``; every other parameter must be keyword-only
    with a default, so that :func:`load` knows the valid options.

    >>> import symlab as sl, torch
    >>> @register("line")  # doctest: +SKIP
    ... def line(seed, *, n=64):
    ...     g = torch.Generator().manual_seed(seed)
    ...     x = torch.randn(n, 1, generator=g)
    ...     return from_tensors(x, 2 * x, name="line")
    >>> ds = sl.data.load("line", n=8)  # doctest: +SKIP
    >>> @register("bad")  # builders take the seed first
    ... def bad(n): ...
    Traceback (most recent call last):
        ...
    TypeError: data builder 'bad' must take `seed` as its first parameter
    """

    def deco(builder: Builder) -> Builder:
        params = list(inspect.signature(builder).parameters.values())
        if not params or params[0].name != "seed":
            raise TypeError(f"data builder {name!r} must take `seed` as its first parameter")
        options: dict[str, Any] = {}
        for p in params[1:]:
            if p.kind is not p.KEYWORD_ONLY or p.default is p.empty:
                raise TypeError(
                    f"option {p.name!r} of data builder {name!r} must be keyword-only with a "
                    "default"
                )
            options[p.name] = p.default
        if name in _REGISTRY:
            raise ValueError(f"a data set named {name!r} is already registered")
        _REGISTRY[name] = _Entry(builder, default_seed, options)
        return builder

    return deco


def available() -> dict[str, dict[str, Any]]:
    """Registered data set names, each with its options and their defaults.

    >>> sorted(available())[:2]
    ['coherence', 'digits']
    """
    return {n: {"seed": e.default_seed, **e.options} for n, e in sorted(_REGISTRY.items())}


def load(name: str, seed: int | None = None, **options: Any) -> Dataset:
    """Build the data set ``name`` offline; the same seed gives identical tensors in any process.

    Args:
        name: one of :func:`available` — ``"mnist1d"``, ``"digits"``, ``"teacher"``,
            ``"gaussian_mixture"``, ``"coherence"``.
        seed: generation seed; ``None`` takes the data set's canonical seed (42 for MNIST-1D,
            as in Greydanus and Kobak; 0 otherwise).
        **options: data-set specific options; see each builder's docstring or
            ``available()[name]``.

    Raises:
        DataError: an unknown name or option, or an invalid option value; the message lists
            the valid choices.

    >>> ds = load("gaussian_mixture", seed=0, n_train=30, n_test=10)
    >>> ds.x_train.shape, ds.num_classes
    (torch.Size([30, 2]), 3)
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise DataError(f"unknown data set {name!r}; available: {sorted(_REGISTRY)}")
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in entry.options.items())
        raise DataError(
            f"unknown option(s) {unknown} for data set {name!r}; valid options: {valid}"
        )
    if seed is None:
        seed = entry.default_seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be a non-negative int, got {seed!r}")
    return entry.builder(int(seed), **options)
