"""The measuring method every benchmark shares.

- :func:`fixed_threads` pins torch's intra-op threads and every BLAS/OpenMP pool that
  threadpoolctl can see (OpenBLAS inside numpy/scipy, MKL, libgomp) to one count for the body
  and restores the caller's settings after it: numpy's OpenBLAS threads and torch's threads
  would otherwise oversubscribe a small machine and slow the baselines far more than symlab.
- :func:`interleave` times several functions in rounds, one call of each per round in turn, so a
  change of load from other processes hits them alike, and keeps every round's wall and CPU time.
- :class:`Timing` prints ``median [min–max]``; :func:`ratio` prints the per-round ratios the
  same way (each round's two calls ran side by side).
- :func:`load` reads the load average, printed at the start and end of each benchmark.
- :func:`steady_allocator` (called by :func:`header`, so in every benchmark's process) makes
  glibc's malloc keep freed memory: otherwise whether a large temporary is a fresh ``mmap``
  (hundreds of thousands of page faults per round) depends on what ran before, and the same
  forward passes measured 1.04 s or 1.45 s by that alone. :func:`interleave` counts each
  round's page faults, so such an artefact shows.

``python -m benchmarks`` runs each benchmark module in a fresh interpreter, so no benchmark sees
another's thread settings, random state or warmed caches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from threadpoolctl import threadpool_limits

THREADS = 1


@contextmanager
def fixed_threads(n: int = THREADS) -> Iterator[None]:
    """torch, BLAS and OpenMP at ``n`` threads for the body; the previous settings after."""
    prev = torch.get_num_threads()
    with threadpool_limits(limits=n):
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(prev)


@dataclass
class Timing:
    """Wall and CPU seconds of one function, one entry per round."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)  # minor page faults per round

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def __str__(self) -> str:
        return f"{spread(self.wall, 's')}, CPU {spread(self.cpu, 's')}"


def spread(values: list[float], unit: str = "", digits: int = 3) -> str:
    """``median [min–max]`` of ``values``."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    u = f" {unit}" if unit else ""
    return f"{med:.{digits}f}{u} [{lo:.{digits}f}–{hi:.{digits}f}]"


def interleave(
    fns: dict[str, Callable[[], object]],
    rounds: int = 5,
    warmup: bool = True,
    threads: int = THREADS,
) -> dict[str, Timing]:
    """Time every function ``rounds`` times, in turn within each round, at ``threads``."""
    out = {k: Timing() for k in fns}
    with fixed_threads(threads):
        if warmup:
            for fn in fns.values():
                fn()
        for _ in range(rounds):
            for k, fn in fns.items():
                f0 = _faults()
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                out[k].wall.append(time.perf_counter() - t0)
                out[k].cpu.append(time.process_time() - c0)
                out[k].faults.append(_faults() - f0)
    return out


def ratio(num: Timing, den: Timing) -> str:
    """``num / den`` per round, as ``median [min–max]`` (×), by wall and by CPU time (CPU time
    does not count the time a process waits for a core on a loaded machine)."""
    wall = spread([a / b for a, b in zip(num.wall, den.wall, strict=True)], "×", 2)
    cpu = spread([a / b for a, b in zip(num.cpu, den.cpu, strict=True)], "×", 2)
    return f"{wall}, CPU {cpu}"


def load() -> str:
    """The 1, 5 and 15 minute load averages, and the core count."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


#: glibc's mallopt parameters: never give the heap's top back, no mmap below 32 MiB (its cap)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator() -> bool:
    """Make glibc's malloc keep freed memory for this process (no trimming, no ``mmap`` for
    blocks under 32 MiB), so that large temporaries are not page-faulted in afresh on every
    round; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, 2**30)) and bool(mallopt(_M_MMAP_THRESHOLD, 2**25))


def header(what: str) -> None:
    """Print what is measured, the thread setting, the allocator setting and the load."""
    kept = "glibc keeps freed memory" if steady_allocator() else "the C library's default"
    print(
        f"{what}\n  threads: torch/BLAS/OpenMP {THREADS} per measurement; allocator: {kept}; "
        f"{load()}",
        flush=True,
    )
