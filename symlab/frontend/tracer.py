"""symlab's torch.fx tracer: which modules are leaves (one op each) and which are traced into.

A module is a leaf when symlab reads it as one op: a registered module op
(:mod:`symlab.frontend.modules`; a subclass only when it computes its base's ``forward``
unchanged, see :mod:`symlab.frontend.exact`), a composite expanded by a macro
(:mod:`symlab.frontend.macros`) or a type declared with :func:`declare_leaf`. Everything else is
traced into, so its ops get their own rules. (Models with forward hooks are refused when
they are converted: torch.fx does not run hooks, so what they do would be invisible.)
"""

from __future__ import annotations

import collections
import operator
from typing import Any

import torch.fx as fx
from torch import nn

from symlab.frontend.macros import MACROS
from symlab.frontend.modules import reading, why_not_read

__all__ = ["Tracer", "declare_leaf", "is_leaf"]

_EXTRA_LEAVES: set[type[nn.Module]] = set()


def declare_leaf(module_type: type[nn.Module]) -> None:
    """Trace ``module_type`` as one op (register its op with
    :func:`symlab.frontend.register_module_op` and a rule with ``@symlab.symmetry.rule``).

    >>> from torch import nn
    >>> class Mine(nn.Module):
    ...     def forward(self, x):
    ...         return x
    >>> declare_leaf(Mine); is_leaf(Mine())
    True
    >>> _EXTRA_LEAVES.discard(Mine)
    """
    _EXTRA_LEAVES.add(module_type)


def is_leaf(module: nn.Module) -> bool:
    """Whether symlab reads ``module`` as one op rather than tracing into it.

    >>> from torch import nn
    >>> is_leaf(nn.Linear(2, 3)), is_leaf(nn.Sequential(nn.Linear(2, 3)))
    (True, False)
    """
    t = type(module)
    return t in _EXTRA_LEAVES or t in MACROS or reading(module) is not None


class _ModuleStack(collections.OrderedDict):
    """fx's module stack, which it copies into every node's meta: copied without pickling."""

    def __copy__(self) -> _ModuleStack:
        return _ModuleStack(self)


class _Proxy(fx.Proxy):
    """torch.fx's proxy, with augmented assignment recorded as the in-place op it is on
    tensors (``h += y`` writes ``h``; torch.fx would record ``h + y`` and lose the write, which
    another name for ``h`` sees: :mod:`symlab.frontend.in_place`)."""

    def __iadd__(self, other: Any) -> fx.Proxy:
        return self.tracer.create_proxy("call_function", operator.iadd, (self, other), {})

    def __isub__(self, other: Any) -> fx.Proxy:
        return self.tracer.create_proxy("call_function", operator.isub, (self, other), {})

    def __imul__(self, other: Any) -> fx.Proxy:
        return self.tracer.create_proxy("call_function", operator.imul, (self, other), {})

    def __itruediv__(self, other: Any) -> fx.Proxy:
        return self.tracer.create_proxy("call_function", operator.itruediv, (self, other), {})


class Tracer(fx.Tracer):
    """torch.fx's tracer with symlab's leaves; buffers are proxied (causal masks sliced by a
    traced size), and the module stack is copied cheaply."""

    proxy_buffer_attributes = True  # buffers sliced by a traced size (causal masks)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.module_stack = _ModuleStack()

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if is_leaf(m):
            return True
        if why_not_read(m) is not None:  # a registered layer whose forward changed: trace it
            return False
        return super().is_leaf_module(m, qualname)
