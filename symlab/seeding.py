"""Reproducible randomness: every random thing in symlab takes a seed or a ``torch.Generator``.

Child seeds are derived with :class:`numpy.random.SeedSequence` (never Python's salted ``hash``),
so the same seed gives the same tensors in every process.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["child_seed", "generator"]


def child_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived deterministically from ``seed`` and integer ``keys``.

    >>> child_seed(0, 1) == child_seed(0, 1) and child_seed(0, 1) != child_seed(0, 2)
    True
    """
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    ss = np.random.SeedSequence([int(seed), *[int(k) for k in keys]])
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ [1 << 31, 1]) & (
        (1 << 63) - 1
    )


def generator(seed: int | torch.Generator | None, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``seed`` (and ``keys``); a generator passes through.

    Without keys this is ``torch.Generator().manual_seed(seed)``; with keys the seed is
    :func:`child_seed` of both.

    >>> a = torch.rand(2, generator=generator(3)); b = torch.rand(2, generator=generator(3))
    >>> bool((a == b).all())
    True
    """
    if isinstance(seed, torch.Generator):
        return seed
    g = torch.Generator()
    base = 0 if seed is None else seed
    g.manual_seed(child_seed(base, *keys) if keys else base)
    return g
