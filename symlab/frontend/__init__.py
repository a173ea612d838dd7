"""From ``nn.Module`` to :class:`~symlab.graph.ArchGraph`: the front-ends.

``trace(model, example_input)`` reads symlab's own models directly, an ``nn.Sequential`` child
by child, and anything else with torch.fx (:mod:`.fx`), falling back to torch.export
(:mod:`.export`) where torch.fx cannot trace Python code on sizes. Shapes come from
:mod:`.shapes`; modules are read by :mod:`.modules` (and, with their context, :mod:`.layers`
and :mod:`.recurrent`), functions by :mod:`.functions` (and, with their arguments,
:mod:`.readers` and :mod:`.readers_params`), multi-node idioms (hand-written attention,
``x / x.norm(...)``) by the patterns of :mod:`.patterns`. Teach it your own code
with :func:`register_module_op` + :func:`declare_leaf` (modules), :func:`register_function`
(functions and tensor methods) or :func:`register_pattern`, plus a symmetry rule for the op.

A registered module is read only when it computes its registered class's forward (a subclass
that changes it is traced into: :mod:`.exact`); layers called functionally on a module's own
parameters are read as that module (:mod:`.functional_layers`).

Imports flow one way: fxutil, functions, axes, exact ← modules, readers ← readers_params,
layers, recurrent ← macros, tracer, shapes, operands, functional_layers, patterns ← convert ←
export ← fx ← trace.
"""

from symlab.errors import TraceError
from symlab.frontend.functions import register_function
from symlab.frontend.modules import register_module_op
from symlab.frontend.patterns import register_pattern
from symlab.frontend.trace import trace
from symlab.frontend.tracer import declare_leaf

__all__ = [
    "TraceError",
    "declare_leaf",
    "register_function",
    "register_module_op",
    "register_pattern",
    "trace",
]
