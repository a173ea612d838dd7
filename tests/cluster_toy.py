"""A toy experiment for the multi-process Dask cluster test (``test_runner_cluster.py``).

Run by name through the CLI (``symlab experiment run cluster_toy``) with this folder on
``PYTHONPATH``. Its jobs are controlled by files in the folder named by ``SYMLAB_TOY_STATE``
(read when the sweep is built, and carried to the workers in the config):

* every job appends ``n pid pgid`` to ``started.log`` when it starts, then waits until ``go``
  exists (so the test decides when jobs may finish, with no race against the clock);
* job ``n == FAILING`` raises until ``heal`` exists (a failure for the resume to retry).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symlab.runner import Experiment, Setting

FAILING = 4
N_JOBS = 6
GATE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ToyConfig:
    n: int = 0
    state: str = ""


def run(cfg: ToyConfig, seed: int) -> dict[str, Any]:
    state = Path(cfg.state)
    with open(state / "started.log", "a") as f:  # one short append: atomic on POSIX
        f.write(f"{cfg.n} {os.getpid()} {os.getpgrp()}\n")
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not (state / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    if cfg.n == FAILING and not (state / "heal").exists():
        raise RuntimeError(f"planted failure of job {cfg.n}")
    return {"value": 10 * cfg.n + seed}


EXPERIMENT = Experiment(
    name="cluster_toy",
    title="toy jobs gated by files (the Dask cluster test)",
    run=run,
    settings={
        "small": Setting(
            ToyConfig(state=os.environ.get("SYMLAB_TOY_STATE", "")),
            {"n": list(range(N_JOBS))},
            seeds=1,
            runtime="seconds",
        )
    },
)
