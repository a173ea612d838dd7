"""Idioms of real code recognised as one graph op (see :mod:`.registry`): multi-head attention
written by hand (separate, fused or einsum projections, masks)."""

from symlab.frontend.patterns import attention
from symlab.frontend.patterns.registry import Pattern, patterns, register_pattern

__all__ = ["Pattern", "attention", "patterns", "register_pattern"]
