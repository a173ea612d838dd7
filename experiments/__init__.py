"""The experiments that reproduce published claims, one module each (see ``symlab experiment``).

Each module defines a frozen config dataclass, ``run(config, seed) -> dict``, a ``report`` that
writes a figure (PNG + PDF) and a markdown summary, and ``EXPERIMENT`` with a ``small`` setting
(CI; 10–50 s of CPU, runtimes measured in ``symlab experiment list``), a ``medium`` one and a
``full`` one (runtimes measured; ``python -m experiments.estimate`` estimates a setting's
runtime without running it). ``python -m experiments.publish``
writes the result pages under ``docs/results/`` from the job records.
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
    "e9": "experiments.e9_sequences",
}


def names() -> list[str]:
    return list(MODULES)


def get(name: str) -> Experiment:
    """The registered experiment ``name``, or the ``EXPERIMENT`` of an importable module
    ``name`` (your own experiment, run with ``symlab experiment run my_package.my_experiment``;
    name its :class:`~symlab.runner.Experiment` like the module so its results folder matches).
    """
    if name in MODULES:
        return importlib.import_module(MODULES[name]).EXPERIMENT
    if not all(part.isidentifier() for part in name.split(".")):
        raise RunnerError(f"no experiment {name!r}; choose from {names()}")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        missing = str(getattr(exc, "name", None) or "")
        if missing and missing != name and not name.startswith(missing + "."):
            raise  # the module exists but one of its own imports failed: show that error
        raise RunnerError(
            f"no experiment {name!r}; choose from {names()} or give an importable module "
            "that defines EXPERIMENT"
        ) from None
    exp = getattr(module, "EXPERIMENT", None)
    if not isinstance(exp, Experiment):
        raise RunnerError(f"module {name!r} defines no EXPERIMENT (a symlab.runner.Experiment)")
    return exp
