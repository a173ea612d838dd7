"""Hypothesis strategies for property tests of symmetry claims (import ``strategies``), and the
coverage census of real models (:func:`model_zoo_report`, ``symlab coverage``)."""

from symlab.testing import strategies
from symlab.testing.zoo_report import model_zoo_report

__all__ = ["model_zoo_report", "strategies"]
