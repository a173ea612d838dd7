"""A module is what its ``forward`` does, not what its class inherits.

A registered reader (:mod:`symlab.frontend.modules`) describes what the registered class's
``forward`` computes. A module is read by it only when that is still what runs:

* its class *is* the registered class, or a subclass that redefines none of the names the
  registered ``forward`` reaches: ``forward`` itself, every method it calls on ``self`` (found
  by reading the bytecode of ``forward`` and, transitively, of each such method: every
  attribute name loaded — ``self._conv_forward``, ``self._check_input_dim``, ``self.weight`` —
  is compared by identity with the registered class's own, via :func:`inspect.getattr_static`,
  so a property standing in for a parameter, as ``torch.nn.utils.parametrize`` makes, counts
  as a change too);
* nothing was patched since registration: the class's methods, the instance's ``__dict__``
  (``module.forward = fn``), and the library functions the forward calls through module globals
  (``torch.nn.functional.relu = wrapper``) are the objects recorded when the reader was
  registered;
* the module has no forward hooks (torch.fx does not run hooks while tracing, so a hook's
  effect could not be seen; :func:`hooks_reason` refuses them).

Anything else is traced into by torch.fx (its forward's ops get their own rules) or refused.
"""

from __future__ import annotations

import dis
import inspect
import types
from dataclasses import dataclass
from typing import Any

from torch import nn

from symlab.errors import UnsupportedOpError

__all__ = ["Fingerprint", "fingerprint", "hooks_reason", "refuse_hooks"]

_MISSING = object()
_ATTR_OPS = {"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR", "STORE_ATTR"}
_GLOBAL_OPS = {"LOAD_GLOBAL", "LOAD_NAME"}


def _codes(code: types.CodeType) -> list[types.CodeType]:
    """``code`` and the code objects nested in it (comprehensions, lambdas)."""
    out = [code]
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out += _codes(c)
    return out


def _names(fn: Any) -> tuple[set[str], set[str]]:
    """Attribute names loaded and global names read by ``fn``'s bytecode."""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    attrs: set[str] = set()
    globs: set[str] = set()
    if code is None:
        return attrs, globs
    for c in _codes(code):
        for ins in dis.get_instructions(c):
            if ins.opname in _ATTR_OPS and isinstance(ins.argval, str):
                attrs.add(ins.argval)
            elif ins.opname in _GLOBAL_OPS and isinstance(ins.argval, str):
                globs.add(ins.argval)
    return attrs, globs


@dataclass(frozen=True)
class Fingerprint:
    """What a registered class's ``forward`` reaches: ``members`` are ``(name, object)`` pairs
    as :func:`inspect.getattr_static` finds them on the class (``_MISSING`` for names the
    class does not define), ``library`` are ``(container, name, object)`` triples for the
    globals and library functions the code calls."""

    cls: type
    members: tuple[tuple[str, Any], ...]
    library: tuple[tuple[Any, str, Any], ...]

    def reason(self, module: nn.Module) -> str | None:
        """Why ``module`` does not compute what :attr:`cls`'s registered forward computes
        (None when it does)."""
        t = type(module)
        name = f"{t.__module__}.{t.__qualname__}"
        base = self.cls.__qualname__
        for attr, obj in self.members:
            if inspect.getattr_static(self.cls, attr, _MISSING) is not obj:
                return f"{base}.{attr} was replaced after symlab registered {base}"
            if t is not self.cls and inspect.getattr_static(t, attr, _MISSING) is not obj:
                return f"{name} redefines {attr!r}, which {base}.forward uses"
            if obj is not _MISSING and attr in vars(module):
                return f"the instance's own {attr!r} shadows {base}.{attr}"
        for container, attr, obj in self.library:
            now = container.get(attr, _MISSING) if isinstance(container, dict) \
                else getattr(container, attr, _MISSING)  # fmt: skip
            if now is not obj:
                where = getattr(container, "__name__", "a module global")
                return f"{where}.{attr}, which {base}.forward calls, was replaced"
        return None


def fingerprint(cls: type[nn.Module]) -> Fingerprint:
    """Record what ``cls.forward`` reaches (see the module docstring).

    >>> from torch import nn
    >>> fp = fingerprint(nn.Conv2d)
    >>> "_conv_forward" in dict(fp.members), fp.reason(nn.Conv2d(1, 2, 3)) is None
    (True, True)
    >>> class Scaled(nn.Conv2d):
    ...     def forward(self, x):
    ...         return 2 * super().forward(x)
    >>> fp.reason(Scaled(1, 2, 3))
    "symlab.frontend.exact.Scaled redefines 'forward', which Conv2d.forward uses"
    """
    members: dict[str, Any] = {}
    library: list[tuple[Any, str, Any]] = []
    todo = ["forward"]
    while todo:
        attr = todo.pop()
        if attr in members:
            continue
        obj = inspect.getattr_static(cls, attr, _MISSING)
        members[attr] = obj
        fn = obj.__func__ if isinstance(obj, staticmethod | classmethod) else obj
        if isinstance(fn, property):
            fn = fn.fget
        if not isinstance(fn, types.FunctionType):
            continue
        attrs, globs = _names(fn)
        todo += sorted(attrs - set(members))
        for g in sorted(globs):
            value = fn.__globals__.get(g, _MISSING)
            if value is _MISSING:
                continue
            library.append((fn.__globals__, g, value))
            if isinstance(value, types.ModuleType):  # F.relu, torch.conv2d: the functions
                library += [(value, a, getattr(value, a)) for a in sorted(attrs)
                            if hasattr(value, a)]  # fmt: skip
    return Fingerprint(cls, tuple(members.items()), tuple(library))


def hooks_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be traced faithfully because of hooks (None without hooks).

    >>> from torch import nn
    >>> m = nn.Linear(2, 2); h = m.register_forward_hook(lambda mod, i, o: 2 * o)
    >>> hooks_reason(m)
    'it has forward hooks, which torch.fx does not trace: remove them (handle.remove())'
    >>> h.remove(); hooks_reason(m) is None
    True
    """
    if module._forward_hooks or module._forward_pre_hooks:
        return "it has forward hooks, which torch.fx does not trace: remove them (handle.remove())"
    return None


def refuse_hooks(model: nn.Module) -> None:
    """Raise :class:`UnsupportedOpError` when any module of ``model`` has forward hooks.

    >>> from torch import nn
    >>> refuse_hooks(nn.Sequential(nn.Linear(2, 2)))  # no hooks: nothing to say
    """
    for name, m in model.named_modules():
        why = hooks_reason(m)
        if why is not None:
            raise UnsupportedOpError(
                f"module {name or type(model).__name__!r} ({type(m).__name__}): {why}"
            )
