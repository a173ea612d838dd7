"""The rule-conformance harness (issue 13, deliverable 2): every registered rule, in the
contexts users reach it in, checked against the real model and brute force. A rule registered
without snippets fails ``test_every_rule_and_module_has_conformance_cases``."""

import ast
import subprocess
import sys

import pytest
import torch

from symlab.symmetry.rules import _REGISTRY, registered_ops, rule
from symlab.symmetry.spec import ANY, OpSymmetry
from symlab.testing.conformance import (
    Case,
    ci_cases,
    module_cases,
    run_case,
)
from symlab.testing.conformance_ops import OP_SNIPPETS, Fn, Snippet


def test_every_rule_and_module_has_conformance_cases():
    """In a fresh interpreter: symlab's own registrations, not ones other tests made."""
    code = "from symlab.testing.conformance import coverage_gaps; print(coverage_gaps())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    ops, modules = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert ops == [], f"ops with a rule but no conformance snippets: {ops}"
    assert modules == [], f"module types the front-end reads without a factory: {modules}"


def _check(outcomes):
    bad = [o for o in outcomes if o.status in ("crash", "unsound")]
    assert not bad, "\n".join(f"{o.status}: {o.case}: {o.detail[:400]}" for o in bad)


@pytest.mark.parametrize("op", registered_ops())
def test_rule_conformance(op):
    outcomes = [run_case(c, max_candidates=400) for c in ci_cases([op])]
    _check(outcomes)
    if op in OP_SNIPPETS:  # the op is reached and derived somewhere, not refused everywhere
        derived = [o for o in outcomes if o.status == "sound"]
        assert any(op in o.ops for o in derived), [(o.case, o.status, o.detail) for o in outcomes]


def test_module_conformance():
    _check([run_case(c, brute=False) for c in module_cases()])


def test_the_harness_catches_a_wrong_rule():
    """Negative control: a rule claiming exp commutes with every linear map is caught."""
    from symlab.frontend.functions import USER_FUNCS, register_function

    @rule("conformance_wrong_exp")
    def wrong(node, graph):
        (x,) = graph.inputs(node.name)
        return OpSymmetry(tie=[(x, node.name)], admits=[(x, ANY, "wrong on purpose")])

    register_function(torch.exp, "conformance_wrong_exp")
    try:
        snippet = Snippet("exp", lambda c: Fn(lambda s, h: torch.exp(h)))
        outcome = run_case(Case("conformance_wrong_exp", snippet, "between"))
        assert outcome.status == "unsound", outcome
    finally:
        USER_FUNCS.pop(torch.exp)
        _REGISTRY.pop("conformance_wrong_exp")


@pytest.mark.slow
def test_rule_conformance_deep():
    """Every snippet in every context and conv consumer shape, width 3 too (on demand)."""
    from symlab.testing.conformance import cases

    _check([run_case(c, seed=s) for c in cases(deep=True) for s in range(2)])
