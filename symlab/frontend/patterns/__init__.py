"""Idioms of real code recognised as one graph op (see :mod:`.registry`): multi-head attention
written by hand (separate, fused or einsum projections, masks), and ``x / ‖x‖``."""

from symlab.frontend.patterns import attention, normalize
from symlab.frontend.patterns.registry import Pattern, patterns, register_pattern

__all__ = ["Pattern", "attention", "normalize", "patterns", "register_pattern"]
