"""The experiments that reproduce published claims, one module each (see ``symlab experiment``).

Each module defines a frozen config dataclass, ``run(config, seed) -> dict``, a ``report`` that
writes a figure (PNG + PDF) and a markdown summary, and ``EXPERIMENT`` with a ``small`` setting
(CI; 20–60 s of CPU, runtimes measured in ``symlab experiment list``) and a ``full``
one (runtime in its docstring).
"""

from __future__ import annotations

import importlib

from symlab.runner import Experiment, RunnerError

__all__ = ["MODULES", "get", "names"]

#: experiment name → module (imported on demand).
MODULES: dict[str, str] = {
    "e1": "experiments.e1_rebasin",
    "e2": "experiments.e2_asymmetric",
    "e3": "experiments.e3_identifiability",
    "e4": "experiments.e4_width",
    "e5": "experiments.e5_spawning",
    "e6": "experiments.e6_repair",
    "e7": "experiments.e7_curves",
    "e8": "experiments.e8_effective",
}


def names() -> list[str]:
    return list(MODULES)


def get(name: str) -> Experiment:
    """The registered experiment ``name``."""
    if name not in MODULES:
        raise RunnerError(f"no experiment {name!r}; choose from {names()}")
    return importlib.import_module(MODULES[name]).EXPERIMENT
