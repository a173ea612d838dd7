"""Hypothesis strategies for property tests of symmetry claims (import ``strategies``), and the
coverage census of real models (:func:`model_zoo_report`, ``symlab coverage``)."""

from typing import Any

from symlab.testing import strategies

__all__ = ["model_zoo_report", "strategies"]


def __getattr__(name: str) -> Any:  # the census imports the whole library: only when asked
    if name == "model_zoo_report":
        from symlab.testing.zoo_report import model_zoo_report

        return model_zoo_report
    raise AttributeError(name)
