"""Idioms of real code recognised as one graph op (see :mod:`.registry`): multi-head attention
written by hand (separate, fused or einsum projections, masks) and hand-written RMSNorm /
LayerNorm (:mod:`.norm`), GPT-2's ``Conv1D`` (:mod:`.conv1d`)."""

from symlab.frontend.patterns import attention, conv1d, norm
from symlab.frontend.patterns.registry import Pattern, patterns, register_pattern

__all__ = ["Pattern", "attention", "conv1d", "norm", "patterns", "register_pattern"]
