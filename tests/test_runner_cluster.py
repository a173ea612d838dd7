"""A real multi-process Dask cluster on localhost: a scheduler and two worker processes.

The sweep runs through the command line (``symlab experiment run ... --scheduler tcp://...``);
one worker is killed while it runs a job; every job must be recorded exactly once, and the
resume must run only the job that is missing. The toy jobs (``cluster_toy.py``) wait on files
the test creates, so the order of events is fixed by the test, not by timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
BIN = Path(sys.executable).parent
WAIT_S = 90.0


def wait_for(cond: Callable[[], object], what: str, procs: list[subprocess.Popen] = ()) -> None:
    """Poll ``cond`` until it is true; fail naming ``what`` after ``WAIT_S`` or if one of
    ``procs`` exits first."""
    deadline = time.monotonic() + WAIT_S
    while not cond():
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"waiting for {what}: {p.args[:3]} exited with {p.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen) -> None:
    """Kill ``proc``'s process group (we started it as a session leader) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(WAIT_S)


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    env: dict[str, str]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    dask = BIN / "dask"
    if not dask.exists():
        pytest.skip("the dask command is not installed")
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    info = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(logs / log, "w") as out:
            p = subprocess.Popen(
                [str(dask), *args],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as a whole
            )
        procs.append(p)
        return p

    try:
        scheduler = start(
            ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(info)],
            "scheduler.log",
        )  # fmt: skip
        wait_for(lambda: info.exists() and info.stat().st_size > 0, "the scheduler", procs)
        address = json.loads(info.read_text())["address"]
        worker = ["worker", "--scheduler-file", str(info), "--nthreads", "1", "--no-nanny",
                  "--no-dashboard", "--death-timeout", "60"]  # fmt: skip
        workers = []
        for i in range(2):
            local = ["--name", f"w{i}", "--local-directory", str(tmp_path / f"w{i}")]
            workers.append(start([*worker, *local], f"w{i}.log"))
        from dask.distributed import Client

        with Client(address, timeout=WAIT_S) as client:
            client.wait_for_workers(2, timeout=WAIT_S)
        yield Cluster(address, scheduler, workers, env)
    except BaseException:
        for log in sorted(logs.glob("*.log")):
            sys.stderr.write(f"--- {log.name} ---\n{log.read_text()[-3000:]}\n")
        raise
    finally:
        for p in reversed(procs):
            _stop(p)


def _started(state: Path) -> list[tuple[int, int, int]]:
    log = state / "started.log"
    if not log.exists():
        return []
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines() if line]


def test_sweep_on_a_real_cluster_survives_a_killed_worker_and_resumes(cluster, tmp_path):
    from cluster_toy import FAILING, N_JOBS

    state, results = tmp_path / "state", tmp_path / "results"
    state.mkdir()
    env = dict(cluster.env, SYMLAB_TOY_STATE=str(state))
    cmd = [str(BIN / "symlab"), "experiment", "run", "cluster_toy", "--scheduler",
           cluster.address, "--results", str(results), "--no-progress"]  # fmt: skip

    def sweep() -> subprocess.Popen:
        return subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip

    first = sweep()
    try:
        # both workers hold a job at the gate
        wait_for(lambda: len({pg for _, _, pg in _started(state)}) == 2, "two running jobs",
                 [first])  # fmt: skip
        victim = cluster.workers[0]
        lost = [n for n, _, pg in _started(state) if pg == victim.pid]
        assert len(lost) == 1, _started(state)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(WAIT_S)
        (state / "go").touch()
        out, _ = first.communicate(timeout=WAIT_S)
    finally:
        _stop(first)
    assert first.returncode == 1, out  # the planted failure
    jobs, failed = results / "cluster_toy" / "jobs", results / "cluster_toy" / "failed"
    records = [json.loads(p.read_text()) for p in sorted(jobs.glob("*.json"))]
    failures = [json.loads(p.read_text()) for p in sorted(failed.glob("*.json"))]
    # every job recorded exactly once: N_JOBS − 1 results and the planted failure
    assert sorted(r["config"]["n"] for r in records) == [n for n in range(N_JOBS) if n != FAILING]
    assert [f["config"]["n"] for f in failures] == [FAILING]
    assert "planted failure" in failures[0]["error"]
    assert len({r["job_id"] for r in records + failures}) == N_JOBS
    assert [p.stem for p in sorted(jobs.glob("*.json"))] == [r["job_id"] for r in records]
    # the killed worker's job ran again on the survivor, and was recorded once, from there
    survivor = cluster.workers[1].pid
    runs = [n for n, _, _ in _started(state)]
    assert runs.count(lost[0]) == 2 and len(runs) == N_JOBS + 1, runs
    if lost[0] != FAILING:
        (rec,) = [r for r in records if r["config"]["n"] == lost[0]]
        assert os.getpgid(rec["pid"]) == survivor
    assert f"{N_JOBS} jobs: 0 already done, {N_JOBS} run ({N_JOBS - 1} ok, 1 failed)" in out
    # resume on the surviving worker: only the missing job runs
    (state / "heal").touch()
    before = len(_started(state))
    second = sweep()
    try:
        out, _ = second.communicate(timeout=WAIT_S)
    finally:
        _stop(second)
    assert second.returncode == 0, out
    assert [n for n, _, _ in _started(state)[before:]] == [FAILING]
    assert f"{N_JOBS} jobs: {N_JOBS - 1} already done, 1 run (1 ok, 0 failed)" in out
    assert len(list(jobs.glob("*.json"))) == N_JOBS
    assert len(list(failed.glob("*.json"))) == 1  # the failed attempt stays as history
