"""Idioms of real code recognised as one graph op (see :mod:`.registry`): multi-head attention
written by hand (separate, fused or einsum projections, masks), ``x / ‖x‖``, hand-written
RMSNorm / LayerNorm (:mod:`.norm`) and GPT-2's ``Conv1D`` (:mod:`.conv1d`)."""

from symlab.frontend.patterns import attention, conv1d, norm, normalize
from symlab.frontend.patterns.registry import Pattern, patterns, register_pattern

__all__ = ["Pattern", "attention", "conv1d", "norm", "normalize", "patterns", "register_pattern"]
