"""Run every ``benchmarks/bench_*.py`` module (or those named on the command line).

Each module defines ``run() -> None`` that prints its measurements and ratios. Every module runs
in a fresh interpreter (``python -m benchmarks --one NAME``), so that no benchmark inherits
another's thread settings, random state, trained models or warmed caches.
Usage: ``python -m benchmarks [NAME ...]`` (NAME without the ``bench_`` prefix).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import time

import benchmarks
from benchmarks._harness import load


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        importlib.import_module(f"benchmarks.{argv[1]}").run()
        return 0
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    wanted = [f"bench_{a.removeprefix('bench_')}" for a in argv]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    failed = []
    for name in wanted or names:
        print(f"=== {name} === ({load()})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "benchmarks", "--one", name])
        if rc:
            failed.append(name)
        print(f"({name} took {time.perf_counter() - t0:.1f} s; {load()})\n", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
