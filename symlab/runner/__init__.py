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
from .stats import (
    Interval,
    combine_verdicts,
    correlation_interval,
    difference_interval,
    mean_interval,
    proportion_interval,
    slope_interval,
)
from .store import ResultStore, to_json

__all__ = [
    "Experiment",
    "Interval",
    "Job",
    "Report",
    "ResultStore",
    "RunnerError",
    "Setting",
    "Sweep",
    "SweepSummary",
    "canonical_json",
    "combine_verdicts",
    "config_dict",
    "correlation_interval",
    "difference_interval",
    "execute_job",
    "job_id",
    "mean_interval",
    "proportion_interval",
    "run_sweep",
    "slope_interval",
    "to_json",
]
