"""Performance helpers shared by the front-ends.

Tracing and derivation allocate many small objects (fx nodes, graph nodes, specs) that stay
alive until the call returns; Python's cyclic garbage collector, triggered by these
allocations, would walk every live object of the process (torch's included) several times per
call without freeing anything. :func:`paused_gc` holds it off for the duration of such a call.
:class:`LazyStateDict` defers ``model.state_dict()`` to the derivations that read it (those with
fixed data: asymmetric layers, gates).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["LazyStateDict", "paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the body with Python's cyclic garbage collector paused (reference counting still
    frees memory at once); the collector's previous state is restored on exit, and nested
    uses are free.

    >>> import gc
    >>> with paused_gc():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class LazyStateDict(Mapping[str, torch.Tensor]):
    """``model.state_dict()``, taken on first use.

    >>> net = nn.Linear(2, 3)
    >>> sd = LazyStateDict(net)
    >>> sd._sd is None, sorted(sd), sd._sd is not None
    (True, ['bias', 'weight'], True)
    """

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._sd: Mapping[str, torch.Tensor] | None = None

    def _get(self) -> Mapping[str, torch.Tensor]:
        if self._sd is None:
            self._sd = self._model.state_dict()
        return self._sd

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())
