"""Running a sweep: in-process, on a local process pool, or on a Dask cluster.

:func:`run_sweep` skips the jobs that already have a record, runs the rest, and writes each
record as soon as its job finishes, so a killed sweep resumed with the same call runs only what
is missing. A job that raises is recorded with its error and traceback (and run again on the
next resume); the sweep goes on. A worker process that dies (killed, out of memory) breaks a
local pool: the pool is rebuilt and the jobs it was running are retried once, then recorded as
failed. With Dask, the cluster's own retry policy applies (a job whose worker died runs again on
another worker; one that kills ``distributed.scheduler.allowed-failures`` workers is recorded as
failed); before submitting, the scheduler and the workers are checked to import the
experiment's module, and a scheduler that cannot be reached is a :class:`RunnerError`.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from symlab.progress import progress_bar

from .experiment import Job, RunFn, RunnerError, Sweep, config_dict
from .store import ResultStore, to_json

__all__ = ["SweepSummary", "execute_job", "run_sweep"]

CRASH_MESSAGE = (
    "the worker process died while running this job (killed, or out of memory?); if every "
    "job of a script failed so, guard the script's entry with `if __name__ == '__main__':` "
    "(worker processes are spawned and import the main module)"
)


@dataclass
class SweepSummary:
    """What :func:`run_sweep` did: counts, and the sweep's records and failures afterwards.

    >>> import dataclasses, tempfile
    >>> from symlab.runner import Sweep
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    >>> def run(config, seed):
    ...     return {"score": config.width + seed}
    >>> with tempfile.TemporaryDirectory() as results:
    ...     summary = run_sweep(Sweep("demo", run, Config(), seeds=3), results, workers=1)
    >>> summary.total, summary.ok, summary.failed, summary.complete
    (3, 3, 0, True)
    >>> sorted(r["result"]["score"] for r in summary.records)
    [4, 5, 6]
    """

    total: int
    skipped: int
    ran: int
    ok: int
    failed: int
    seconds: float
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.records) == self.total

    def line(self) -> str:
        return (
            f"{self.total} jobs: {self.skipped} already done, {self.ran} run "
            f"({self.ok} ok, {self.failed} failed) in {self.seconds:.1f} s"
        )


def execute_job(run: RunFn, job: Job) -> dict[str, Any]:
    """Run one job and return its record; an exception becomes a ``status: "error"`` record.

    >>> import dataclasses
    >>> from symlab.runner import Job
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    >>> record = execute_job(lambda config, seed: {"score": config.width}, Job("demo", Config(), 0))
    >>> record["status"], record["result"]
    ('ok', {'score': 4})
    >>> execute_job(lambda config, seed: 1 / 0, Job("demo", Config(), 0))["status"]
    'error'
    """
    start, cpu = time.time(), time.process_time()
    record: dict[str, Any] = {
        "job_id": job.id,
        "experiment": job.experiment,
        "config": config_dict(job.config),
        "config_type": f"{type(job.config).__module__}.{type(job.config).__qualname__}",
        "seed": job.seed,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": start,
    }
    try:
        result = run(job.config, job.seed)
        if not isinstance(result, dict):
            raise TypeError(f"the experiment returned a {type(result).__name__}, not a dict")
        to_json(result)  # fail here, inside the job, if it is not JSON-able
        record.update(status="ok", result=result)
    except Exception as exc:
        record.update(
            status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )
    record["seconds"] = time.time() - start
    record["cpu_seconds"] = time.process_time() - cpu  # all threads of this process
    return record


def _crash_record(job: Job, message: str) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "experiment": job.experiment,
        "config": config_dict(job.config),
        "seed": job.seed,
        "status": "error",
        "error": message,
        "started": time.time(),
        "seconds": 0.0,
    }


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _pool(workers: int, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(threads,)
    )


def _local(run: RunFn, jobs: list[Job], workers: int) -> Iterator[dict[str, Any]]:
    """Jobs on a pool of ``workers`` spawned processes (``1``: in this process).

    A dying worker breaks the whole pool and fails every job not yet finished. Those jobs go
    to a fresh pool; a job caught in a second break runs alone in a pool of its own, where a
    crash is surely its own and is recorded as its failure.
    """
    if workers == 1:
        for job in jobs:
            yield execute_job(run, job)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    pending, breaks = list(jobs), dict.fromkeys((j.id for j in jobs), 0)
    while pending:
        alone = [j for j in pending if breaks[j.id] >= 2]
        batches = [[j] for j in alone] + [[j for j in pending if breaks[j.id] < 2]]
        pending = []
        for batch in filter(None, batches):
            ex = _pool(min(workers, len(batch)), threads)
            futures: dict[Future, Job] = {ex.submit(execute_job, run, j): j for j in batch}
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = futures.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            breaks[job.id] += 1
                            if len(batch) == 1 and breaks[job.id] > 2:
                                yield _crash_record(job, CRASH_MESSAGE)
                            else:
                                pending.append(job)
            finally:
                ex.shutdown(wait=True, cancel_futures=True)


def _importable(module: str) -> str:
    """``""`` if ``module`` imports in this process, else the error (run on the cluster)."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


IMPORT_HINT = (
    "the scheduler and every worker must be able to import symlab and the experiment's "
    "module: install the same checkout in their environment, or start them from the "
    "repository root (or with it on PYTHONPATH)"
)


def _connect(scheduler: Any) -> tuple[Any, bool]:
    try:
        from dask.distributed import Client
    except ImportError:
        raise RunnerError(
            "running on a Dask scheduler needs dask.distributed: pip install 'symlab[dask]'"
        ) from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler), True
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunnerError(
            f"could not connect to the Dask scheduler at {scheduler!r} ({first}); start one "
            "with `dask scheduler` and pass the tcp://HOST:PORT address it prints"
        ) from None


def _check_imports(client: Any, module: str) -> None:
    """Refuse a cluster whose scheduler or workers cannot import the experiment's module
    (otherwise every job fails with an unpickling error)."""
    try:
        found = {"scheduler": client.run_on_scheduler(_importable, module)}
        found.update(client.run(_importable, module))
    except Exception as exc:
        raise RunnerError(f"the Dask cluster cannot run symlab jobs ({_one_line(exc)}); "
                          f"{IMPORT_HINT}") from None  # fmt: skip
    bad = {where: msg for where, msg in found.items() if msg}
    if bad:
        where, msg = next(iter(bad.items()))
        raise RunnerError(
            f"{len(bad)} of the cluster's processes cannot import {module!r} (first: "
            f"{where}: {msg}); {IMPORT_HINT}"
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _dask(run: RunFn, jobs: list[Job], scheduler: Any) -> Iterator[dict[str, Any]]:
    client, own = _connect(scheduler)
    from dask.distributed import as_completed

    try:
        if run.__module__ != "__main__":  # a script's functions travel by value
            _check_imports(client, run.__module__)
        futures = {
            client.submit(execute_job, run, j, key=f"{j.experiment}-{j.id}", pure=False): j
            for j in jobs
        }
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # a lost worker (KilledWorker) or a cancelled task
                yield _crash_record(job, f"the Dask task failed: {_one_line(exc)}")
            fut.release()
    finally:
        if own:
            client.close()


def run_sweep(
    sweep: Sweep,
    results: str | os.PathLike[str] = "results",
    *,
    workers: int | None = None,
    scheduler: Any = None,
    progress: bool | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> SweepSummary:
    """Run the jobs of ``sweep`` that have no record under ``results/<experiment>/``.

    Args:
        sweep: the configs × seeds to run.
        results: the results root folder.
        workers: local processes (default: the CPU count, at most the number of jobs);
            ``1`` runs every job in this process. Workers are spawned, so a script calling
            this with ``workers > 1`` needs the ``if __name__ == "__main__":`` guard.
        scheduler: a Dask scheduler address (``"tcp://host:8786"``) or a
            ``dask.distributed.Client``; the jobs then run on that cluster (its workers must be
            able to import the experiment's module) and ``workers`` is ignored.
        progress: a progress bar over jobs (default: only when stderr is a terminal).
        on_record: called with each new record (ok or failed) after it is stored.

    Returns:
        a :class:`SweepSummary` with every finished record of the sweep (old and new).

    >>> import dataclasses, tempfile
    >>> from symlab.runner import Sweep
    >>> @dataclasses.dataclass(frozen=True)
    ... class Config:
    ...     width: int = 4
    >>> def run(config, seed):
    ...     return {"score": config.width + seed}
    >>> sweep = Sweep("demo", run, Config(), grid={"width": [4, 8]}, seeds=2)
    >>> with tempfile.TemporaryDirectory() as results:
    ...     first = run_sweep(sweep, results, workers=1)
    ...     again = run_sweep(sweep, results, workers=1)  # every job already has a record
    >>> (first.ran, first.ok), (again.skipped, again.ran)
    ((4, 4), (4, 0))
    """
    start = time.time()
    store = ResultStore(results, sweep.experiment)
    jobs = sweep.jobs()
    done = store.done_ids()
    todo = [j for j in jobs if j.id not in done]
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n_workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    if not todo:
        stream: Iterator[dict[str, Any]] = iter(())
    elif scheduler is not None:
        stream = _dask(sweep.run, todo, scheduler)
    else:
        stream = _local(sweep.run, todo, n_workers)
    ok = failed = 0
    with progress_bar(len(todo), progress, f"{sweep.experiment}") as bar:
        for record in stream:
            store.write(record)
            ok, failed = (ok + 1, failed) if record["status"] == "ok" else (ok, failed + 1)
            bar.update(1)
            if on_record is not None:
                on_record(record)
    ids = [j.id for j in jobs]
    return SweepSummary(
        total=len(jobs),
        skipped=len(jobs) - len(todo),
        ran=ok + failed,
        ok=ok,
        failed=failed,
        seconds=time.time() - start,
        records=store.records(ids),
        failures=store.failures(ids),
    )
