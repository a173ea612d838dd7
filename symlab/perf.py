"""Performance helpers shared by the front-ends.

Tracing and derivation allocate many small objects (fx nodes, graph nodes, specs) that stay
alive until the call returns; Python's cyclic garbage collector, triggered by these
allocations, would walk every live object of the process (torch's included) several times per
call without freeing anything. :func:`paused_gc` holds it off for the duration of such a call.
:class:`LazyStateDict` defers ``model.state_dict()`` to the derivations that read it (those with
fixed data: asymmetric layers, gates).

Small tensors: torch splits each kernel over its intra-op threads; for tensors of a few thousand
elements the split costs more than it saves, and on a loaded machine every kernel waits for the
slowest thread (measured on a shared 2-core machine: ``check_invariance`` of a small MLP 0.033 s
on one thread, 0.64 s at torch's default; ``brute_force_group`` 0.032 s and 1.25 s).
:func:`single_thread` runs such work on one thread and gives the caller's setting back;
:func:`is_small` says whether a model and its inputs are small enough for it.

Import time: sympy, networkx and scipy.optimize cost more to import than the rest of symlab
together; :func:`lazy_import` binds such a module at once and loads it on first use, so that
``import symlab`` stays cheap (``tests/test_import_time.py`` pins what a bare import loads).
"""

from __future__ import annotations

import gc
import importlib.util
import itertools
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "SMALL_ELEMENTS",
    "LazyStateDict",
    "is_small",
    "lazy_import",
    "paused_gc",
    "single_thread",
]

#: parameters plus input elements up to which :func:`is_small` calls the work small (about
#: 8 MB of float32: an MLP of a few 512-wide layers on a small batch; not a ResNet-50)
SMALL_ELEMENTS = 2**21


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


def lazy_import(name: str) -> types.ModuleType:
    """The module ``name``, bound now and loaded on first attribute access (the standard
    library's :class:`importlib.util.LazyLoader`); an already loaded module is returned as is.

    >>> json = lazy_import("json")
    >>> json.dumps([1])
    '[1]'
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def single_thread(enabled: bool = True) -> Iterator[None]:
    """Run the body with torch's intra-op threads at one (torch's OpenMP/MKL kernels included),
    the caller's thread count restored on exit, also on error; nested uses are free and
    ``enabled=False`` changes nothing. The setting is process-wide: other Python threads running
    torch work meanwhile see it too.

    >>> n = torch.get_num_threads()
    >>> with single_thread():
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == n
    True
    """
    prev = torch.get_num_threads()
    if not enabled or prev == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def is_small(model: nn.Module, *inputs: object, limit: int = SMALL_ELEMENTS) -> bool:
    """Whether ``model``'s parameters and buffers plus the tensor ``inputs`` hold at most
    ``limit`` elements (work for :func:`single_thread`).

    >>> is_small(nn.Linear(512, 512), torch.randn(64, 512))
    True
    >>> is_small(nn.Linear(4096, 4096))
    False
    """
    n = sum(t.numel() for t in itertools.chain(model.parameters(), model.buffers()))
    n += sum(x.numel() for x in inputs if isinstance(x, torch.Tensor))
    return n <= limit


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
