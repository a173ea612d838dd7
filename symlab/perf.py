"""Performance helpers shared by the front-ends.

Tracing and derivation allocate many small objects (fx nodes, graph nodes, specs) that stay
alive until the call returns; Python's cyclic garbage collector, triggered by these
allocations, would walk every live object of the process (torch's included) several times per
call without freeing anything. :func:`paused_gc` holds it off for the duration of such a call.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


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
