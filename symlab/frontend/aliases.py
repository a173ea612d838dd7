"""Which tensors of a torch.export graph may share memory, and who reads them when.

An in-place op, read as its out-of-place op, is exact only where nothing else can see the
write: the written tensor is no input, parameter or view (:func:`may_alias`), and every other
reader of it — and of every view taken of it — runs before the write (:func:`read_before`).
Aliasing is read from each op's schema (:func:`may_view`); an op without one may alias
anything.
"""

from __future__ import annotations

import torch.fx as fx

from symlab.frontend.fxutil import flat_nodes
from symlab.frontend.units import makes_fresh

__all__ = ["may_alias", "may_view", "read_before", "read_only_before", "writes_in_place"]


def read_before(src: fx.Node, write: fx.Node) -> bool:
    """Whether every other reader of ``src`` runs before ``write``, and so does every reader of
    a view of ``src`` (``scores[:, :, k:]`` read to compute what is then written over
    ``scores``), none of those views written in place: nothing reads ``src``'s memory after
    the write but the write's own result."""
    order = {n: i for i, n in enumerate(src.graph.nodes)}
    return all(
        read_only_before(u, src, write, order, by_write=False) for u in src.users if u is not write
    )


def read_only_before(
    user: fx.Node, of: fx.Node, write: fx.Node, order: dict[fx.Node, int], *, by_write: bool
) -> bool:
    """Whether ``user``, a reader of ``of``, runs before ``write`` (positions in ``order``), and
    so does every reader of it if it is a view of ``of``, and of those views in turn, none
    of them written in place. ``by_write``: the write itself may be such a reader (reading
    another part of the tensor as the value it writes into a slice); else it may not
    (``b.add_(b.t())`` reads entries it has already written)."""
    todo = [(user, of)]
    while todo:
        u, o = todo.pop()
        if u is write and by_write:
            continue
        if order[u] >= order[write]:
            return False
        if may_view(u, o):
            if writes_in_place(u):
                return False
            todo.extend((x, u) for x in u.users)
    return True


def may_view(node: fx.Node, src: fx.Node) -> bool:
    """Whether ``node``'s result may share memory with ``src``, one of its arguments: per the
    op's schema, ``src`` is passed as an argument whose alias set a result carries
    (``expand_as(mask, scores)`` is a view of the mask, not of the scores); a composite op
    that may return its input (:func:`~symlab.frontend.units.makes_fresh`) may share any
    argument's memory. Anything without a schema may."""
    schema = getattr(node.target, "_schema", None)
    if node.op != "call_function" or schema is None:
        return True
    sets = {a for r in schema.returns if r.alias_info for a in r.alias_info.before_set}
    if not sets:
        return not makes_fresh(schema) and src in flat_nodes((node.args, node.kwargs))
    for i, arg in enumerate(schema.arguments):
        if arg.alias_info is None or not set(arg.alias_info.before_set) & sets:
            continue
        value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
        if src in flat_nodes(value):
            return True
    return False


def may_alias(node: fx.Node) -> bool:
    """Whether ``node``'s tensor may share memory with another tensor of the graph: it is an
    input, a view (per the op's schema), or written in place over such a tensor."""
    while True:
        schema = getattr(node.target, "_schema", None)
        if node.op != "call_function" or schema is None or not schema.returns:
            return True  # an input, a parameter, a piece of a split: assume shared
        alias = schema.returns[0].alias_info
        if alias is None and makes_fresh(schema):
            return False  # a fresh tensor
        if alias is None or alias.is_write:
            # perhaps its one tensor argument itself (eval-mode dropout), or written in place
            # over its first: that argument must be unshared too, and read by this op alone
            if not node.args or not isinstance(node.args[0], fx.Node):
                return True
            if alias is None and flat_nodes((node.args, node.kwargs)) != [node.args[0]]:
                return True  # which argument it may return is not known
            node = node.args[0]
            if len(node.users) != 1:
                return True
            continue
        return True  # a view of its input


def writes_in_place(node: fx.Node) -> bool:
    """Whether ``node`` (an aten op) writes into its first argument and returns it, per its
    schema (``relu_``, ``copy_``, ``add_``)."""
    schema = getattr(node.target, "_schema", None)
    returns = schema.returns if schema is not None else []
    return bool(returns) and returns[0].alias_info is not None and returns[0].alias_info.is_write
