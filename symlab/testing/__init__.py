"""Hypothesis strategies for property tests of symmetry claims (import ``strategies``)."""

from symlab.testing import strategies

__all__ = ["strategies"]
