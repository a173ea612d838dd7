"""Idioms of real code recognised as one graph op (see :mod:`.registry`): multi-head attention
written by hand (separate, fused or einsum projections, masks), ``x / ‖x‖``, and
weight-standardised convolutions (timm's ``StdConv2d``/``ScaledStdConv2d``)."""

from symlab.frontend.patterns import attention, normalize, std_conv
from symlab.frontend.patterns.registry import Pattern, patterns, register_pattern

__all__ = ["Pattern", "attention", "normalize", "patterns", "register_pattern", "std_conv"]
