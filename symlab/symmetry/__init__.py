"""Symmetry derivation: per-op rules, factors, the SymmetryGroup and its proofs."""

# importing registers the rules of these ops (the built-in ones register through derive)
from symlab.symmetry import (  # noqa: F401
    elementwise_rules,
    layout_rules,
    recurrent_rules,
    reduce_rules,
)
from symlab.symmetry.factors import Factor, GroupElement
from symlab.symmetry.group import SymmetryGroup
from symlab.symmetry.rules import Rule, get_rule, registered_ops, rule
from symlab.symmetry.spec import ANY, NONE, Admits, FixedData, Mag, OpSymmetry, Sign
from symlab.symmetry.transform import Transform

__all__ = [
    "ANY",
    "NONE",
    "Admits",
    "Factor",
    "FixedData",
    "GroupElement",
    "Mag",
    "OpSymmetry",
    "Rule",
    "Sign",
    "SymmetryGroup",
    "Transform",
    "get_rule",
    "registered_ops",
    "rule",
]
