"""The rule registry: one entry per op, saying how the op constrains and moves symmetries.

Register a rule for your own op with the decorator (the pattern of mergekit's method
registry: the decorator validates the signature)::

    @symlab.symmetry.rule("my_op")
    def my_op(node, graph) -> OpSymmetry: ...

    @my_op.action
    def _(node, params, t_in, t_out) -> dict[str, Tensor]: ...

``derive(node, graph)`` returns an :class:`~symlab.symmetry.spec.OpSymmetry`. ``action`` maps
the node's parameters to their transformed values, given the :class:`Transform` of each input
tensor (``t_in``, in port order) and of the output (``t_out``); it defaults to "no parameters".
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from symlab.errors import UnsupportedOpError
from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.spec import OpSymmetry
from symlab.symmetry.transform import Transform

__all__ = ["Rule", "get_rule", "registered_ops", "rule"]

DeriveFn = Callable[[Node, ArchGraph], OpSymmetry]
ActFn = Callable[
    [Node, dict[str, torch.Tensor], list[Transform], Transform], dict[str, torch.Tensor]
]


def _no_params(
    node: Node, params: dict[str, torch.Tensor], t_in: list[Transform], t_out: Transform
) -> dict[str, torch.Tensor]:
    if params:
        raise UnsupportedOpError(
            f"node {node.name!r} ({node.op}) has parameters {sorted(params)} but its rule "
            "defines no action; add one with @<rule>.action"
        )
    return {}


@dataclass
class Rule:
    """A registered rule: ``derive`` and ``act`` for one op.

    >>> import symlab as sl
    >>> graph = sl.symmetries(sl.nn.MLP([3, 4, 2])).graph; node = graph.node("head")
    >>> r = get_rule(node)
    >>> r.op, r.derive(node, graph).absorbs_shift
    ('linear', True)
    """

    op: str
    derive: DeriveFn
    act: ActFn = _no_params
    #: the action also receives the node's fixed data (``kind="fixed"``: masks, fixed values),
    #: read only and never written back
    reads_fixed: bool = False

    def action(self, fn: ActFn) -> ActFn:
        """Decorator: set the parameter action of this rule."""
        names = ("node", "params", "t_in", "t_out")
        if len(inspect.signature(fn).parameters) == 5:  # rules with internal factors
            names = (*names, "internal")
        _check_signature(fn, names, f"action of rule {self.op!r}")
        self.act = fn
        return fn


_REGISTRY: dict[str, Rule] = {}


def _check_signature(fn: Callable[..., object], names: tuple[str, ...], what: str) -> None:
    params = list(inspect.signature(fn).parameters)
    if len(params) != len(names):
        raise TypeError(f"{what} must take ({', '.join(names)}), got ({', '.join(params)})")


def rule(op: str, *, replace: bool = False) -> Callable[[DeriveFn], Rule]:
    """Register ``fn(node, graph) -> OpSymmetry`` as the rule of ``op``; returns the Rule.

    >>> from symlab.symmetry import Admits, Mag, OpSymmetry, Sign
    >>> @rule("doctest_abs", replace=True)  # |cx| = c|x| for c > 0
    ... def abs_rule(node, graph):
    ...     x = graph.inputs(node.name)[0]
    ...     return OpSymmetry(tie=[(x, node.name)],
    ...                       admits=[(x, Admits(Mag.DIAG, Sign.NONE), "|cx| = c|x|")])
    >>> type(abs_rule).__name__, "doctest_abs" in registered_ops()
    ('Rule', True)
    """

    def register(fn: DeriveFn) -> Rule:
        _check_signature(fn, ("node", "graph"), f"rule {op!r}")
        if op in _REGISTRY and not replace:
            raise ValueError(f"op {op!r} already has a rule; pass replace=True to override it")
        entry = Rule(op, fn)
        _REGISTRY[op] = entry
        return entry

    return register


def get_rule(node: Node) -> Rule:
    """The rule for ``node.op``, or :class:`UnsupportedOpError` (fail closed).

    >>> import symlab as sl
    >>> graph = sl.symmetries(sl.nn.MLP([3, 4, 2])).graph
    >>> get_rule(graph.node("layers.0.linear")).op
    'linear'
    """
    try:
        return _REGISTRY[node.op]
    except KeyError:
        raise UnsupportedOpError(
            f"node {node.name!r}: op {node.op!r} has no symmetry rule, and symlab never assumes "
            f"an unknown op is harmless. Register one with @symlab.symmetry.rule({node.op!r}) "
            f"(known ops: {', '.join(sorted(_REGISTRY))})"
        ) from None


def registered_ops() -> list[str]:
    """Names of every op with a rule.

    >>> {"linear", "activation", "add", "conv"} <= set(registered_ops())
    True
    """
    return sorted(_REGISTRY)
