"""symlab.runner: job ids, the append-only store, failures, resume after a kill, pools, Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from symlab.errors import SymlabError
from symlab.runner import ResultStore, RunnerError, Sweep, job_id, run_sweep

TESTS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Cfg:
    n: int = 1
    fail: bool = False
    crash: int = 0
    sleep: float = 0.0
    log: str = ""


def job(cfg: Cfg, seed: int) -> dict:
    """A toy experiment: logs that it ran, optionally sleeps, raises or kills its process."""
    if cfg.log:
        with open(cfg.log, "a") as f:
            f.write(f"{cfg.n},{seed}\n")
    time.sleep(cfg.sleep)
    if cfg.crash == cfg.n:
        os._exit(3)
    if cfg.fail and seed == 1:
        raise ValueError(f"planted failure n={cfg.n}")
    return {"value": cfg.n * 10 + seed, "pid": os.getpid()}


def ran(log: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split(","))) for line in log.read_text().split()]


def test_job_ids_are_deterministic_and_distinct():
    sweep = Sweep("toy", job, Cfg(), {"n": [1, 2, 3]}, seeds=2)
    ids = sweep.job_ids()
    assert len(set(ids)) == 6
    assert ids == Sweep("toy", job, Cfg(), {"n": [1, 2, 3]}, seeds=2).job_ids()
    assert job_id("toy", Cfg(n=1), 0) != job_id("other", Cfg(n=1), 0)
    # computed in another interpreter (different hash salt): the same id
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_runner as t; "
        "print(t.job_id('toy', t.Cfg(n=2), 1))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == job_id("toy", Cfg(n=2), 1)


def test_bad_sweeps_are_refused():
    with pytest.raises(RunnerError, match="not fields"):
        Sweep("toy", job, Cfg(), {"width": [1]})
    with pytest.raises(RunnerError, match="non-empty"):
        Sweep("toy", job, Cfg(), {"n": []})
    with pytest.raises(RunnerError, match="dataclass"):
        Sweep("toy", job, {"n": 1})
    with pytest.raises(SymlabError, match="folder"):
        Sweep("../x", job, Cfg())


def test_failure_is_recorded_and_rerun_on_resume(tmp_path):
    log = tmp_path / "log"
    sweep = Sweep("toy", job, Cfg(fail=True, log=str(log)), {"n": [1, 2]}, seeds=3)
    out = run_sweep(sweep, tmp_path / "results", workers=1)
    assert (out.total, out.ok, out.failed) == (6, 4, 2)
    assert not out.complete
    errors = sorted(f["error"] for f in out.failures)
    assert errors == ["ValueError: planted failure n=1", "ValueError: planted failure n=2"]
    assert all("Traceback" in f["traceback"] and f["seed"] == 1 for f in out.failures)
    # resume: only the two failed jobs run again (and fail again); history is kept
    again = run_sweep(sweep, tmp_path / "results", workers=1)
    assert (again.skipped, again.ran, again.failed) == (4, 2, 2)
    assert sorted(ran(log)[6:]) == [(1, 1), (2, 1)]
    assert len(list((tmp_path / "results" / "toy" / "failed").glob("*.json"))) == 4
    # the store refuses a second record for a finished job
    store = ResultStore(tmp_path / "results", "toy")
    with pytest.raises(RunnerError, match="final"):
        store.write(out.records[0])


def test_non_dict_and_unserialisable_results_fail_cleanly(tmp_path):
    sweep = Sweep("bad", _returns_set, Cfg(), seeds=1)
    out = run_sweep(sweep, tmp_path, workers=1)
    assert out.failed == 1 and "not JSON-serialisable" in out.failures[0]["error"]


def _returns_set(cfg: Cfg, seed: int) -> dict:
    return {"x": object()}


_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_runner import Cfg, job
from symlab.runner import Sweep, run_sweep
sweep = Sweep("toy", job, Cfg(sleep=0.25, log={log!r}), {{"n": [1, 2, 3, 4]}}, seeds=2)
run_sweep(sweep, {results!r}, workers=1)
"""


def test_killed_sweep_resumes_without_losing_or_repeating_work(tmp_path):
    log, results = tmp_path / "log", tmp_path / "results"
    script = _SCRIPT.format(tests=str(TESTS), log=str(log), results=str(results))
    proc = subprocess.Popen([sys.executable, "-c", script])
    jobs_dir = results / "toy" / "jobs"
    deadline = time.time() + 60
    while time.time() < deadline:
        if jobs_dir.is_dir() and len(list(jobs_dir.glob("*.json"))) >= 3:
            break
        assert proc.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.stem: json.loads(p.read_text()) for p in jobs_dir.glob("*.json")}
    assert 3 <= len(before) < 8, "kill the sweep mid-run"
    started = len(ran(log))
    sweep = Sweep("toy", job, Cfg(sleep=0.25, log=str(log)), {"n": [1, 2, 3, 4]}, seeds=2)
    out = run_sweep(sweep, results, workers=1)
    assert out.complete and out.skipped == len(before) and out.ran == 8 - len(before)
    # the earlier records are untouched, and only the missing jobs ran again
    assert all(json.loads((jobs_dir / f"{k}.json").read_text()) == v for k, v in before.items())
    rerun = set(ran(log)[started:])
    done_before = {(r["config"]["n"], r["seed"]) for r in before.values()}
    assert rerun.isdisjoint(done_before) and len(rerun) == 8 - len(before)
    assert sorted(r["result"]["value"] for r in out.records) == [10, 11, 20, 21, 30, 31, 40, 41]


def test_process_pool_survives_a_job_that_kills_its_worker(tmp_path):
    sweep = Sweep("toy", job, Cfg(crash=2), {"n": [1, 2, 3]}, seeds=1)
    out = run_sweep(sweep, tmp_path, workers=2)
    assert (out.ok, out.failed) == (2, 1)
    assert "worker process died" in out.failures[0]["error"]
    assert out.failures[0]["config"]["n"] == 2
    pids = {r["result"]["pid"] for r in out.records}
    assert os.getpid() not in pids


def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        sweep = Sweep("toy", job, Cfg(fail=True), {"n": [1, 2]}, seeds=2)
        out = run_sweep(sweep, tmp_path, scheduler=client)
        assert (out.ok, out.failed) == (2, 2)
        assert all(f["error"].startswith("ValueError") for f in out.failures)
        # by address, resuming: only the two failed jobs run again
        again = run_sweep(sweep, tmp_path, scheduler=cluster.scheduler_address)
        assert (again.skipped, again.ran) == (2, 2)
        assert sorted(r["result"]["value"] for r in again.records) == [10, 20]


def test_a_list_of_grids_sweeps_the_union_once():
    sweep = Sweep("toy", job, Cfg(), [{"n": [1, 2]}, {"n": [2, 3], "fail": [True]}, {"n": [1]}])
    assert [(c.n, c.fail) for c in sweep.configs()] == [
        (1, False),
        (2, False),
        (2, True),
        (3, True),
    ]
    with pytest.raises(RunnerError, match="not fields"):
        Sweep("toy", job, Cfg(), [{"n": [1]}, {"m": [1]}])


def test_unreachable_scheduler_is_a_named_error(tmp_path):
    dask = pytest.importorskip("dask")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sweep = Sweep("toy", job, Cfg(), seeds=1)
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(RunnerError, match="could not connect to the Dask scheduler"),
    ):
        run_sweep(sweep, tmp_path, scheduler=f"tcp://127.0.0.1:{port}")
    assert not (tmp_path / "toy").exists()


def _orphan(cfg: Cfg, seed: int) -> dict:
    return {"value": 1}


_orphan.__module__ = "no_such_module_on_the_cluster"


def test_cluster_that_cannot_import_the_experiment_is_refused(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        sweep = Sweep("toy", _orphan, Cfg(), seeds=1)
        with pytest.raises(RunnerError, match="cannot import 'no_such_module_on_the_cluster'"):
            run_sweep(sweep, tmp_path, scheduler=client)
