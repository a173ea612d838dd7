"""Idioms of real code recognised as one graph op (see :mod:`.registry`): multi-head attention
written by hand (separate, fused or einsum projections, masks), ``x / ‖x‖``, hand-written
RMSNorm / LayerNorm (:mod:`.norm`), GPT-2's ``Conv1D`` (:mod:`.conv1d`), products with a
weight written by hand (``x @ self.W``, :mod:`.param_matmul`) and weight-standardised
convolutions (timm's ``StdConv2d``/``ScaledStdConv2d``, :mod:`.std_conv`); rotary embeddings
outside a recognised attention block are one opaque node (:mod:`.rope_fixed`)."""

from symlab.frontend.patterns import (
    attention,
    conv1d,
    norm,
    normalize,
    param_matmul,
    rope_fixed,
    std_conv,
)
from symlab.frontend.patterns.registry import Pattern, patterns, register_pattern

__all__ = [
    "Pattern",
    "attention",
    "conv1d",
    "norm",
    "normalize",
    "param_matmul",
    "patterns",
    "register_pattern",
    "rope_fixed",
    "std_conv",
]
