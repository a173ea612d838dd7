"""Experiment sweeps: typed configs × seeds, run locally or on Dask, stored so they resume.

>>> from dataclasses import dataclass
>>> import tempfile
>>> @dataclass(frozen=True)
... class Cfg:
...     n: int = 1
>>> square = lambda config, seed: {"value": config.n**2}
>>> sweep = Sweep("square", run=square, base=Cfg(), grid={"n": [2, 3]}, seeds=1)
>>> out = run_sweep(sweep, tempfile.mkdtemp(), workers=1)
>>> sorted(r["result"]["value"] for r in out.records), out.line().startswith("2 jobs")
([4, 9], True)
"""

from .execute import SweepSummary, execute_job, run_sweep
from .experiment import (
    Experiment,
    Job,
    Report,
    RunnerError,
    Setting,
    Sweep,
    canonical_json,
    config_dict,
    job_id,
)
from .store import ResultStore, to_json

__all__ = [
    "Experiment",
    "Job",
    "Report",
    "ResultStore",
    "RunnerError",
    "Setting",
    "Sweep",
    "SweepSummary",
    "canonical_json",
    "config_dict",
    "execute_job",
    "job_id",
    "run_sweep",
    "to_json",
]
