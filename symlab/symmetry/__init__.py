"""Symmetry derivation: per-op rules, factors, the SymmetryGroup and its proofs.

:mod:`symlab.symmetry.spec_io` exports a group's permutations in git-re-basin's
``PermutationSpec`` format and saves/loads it as JSON (``save_json``, ``load_json``); the whole
group, with its scalings, signs and GL blocks, is saved by :func:`symlab.io.save_group`.
"""

# importing the *_rules modules registers their ops (the built-in ones register through derive)
from symlab.symmetry import (  # noqa: F401
    elementwise_rules,
    layout_rules,
    recurrent_rules,
    reduce_rules,
    spec_io,
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
    "spec_io",
]
