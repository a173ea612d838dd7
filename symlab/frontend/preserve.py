"""Tracing leaves the model as it found it.

torch.fx runs ``forward`` on proxies, the shape pass on fake tensors and torch.export on its own
fake tensors; a forward that caches what it computes in a module attribute (timm's
``attention_bias_cache``, a dict filled on the first eval-mode call) would keep a proxy or a
fake tensor there, and the next real call would read it. :func:`preserved_state` restores every
module's attributes after tracing: attributes added are removed, replaced ones put back, and
the contents of dicts, lists and sets held by a module restored (shallowly).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

__all__ = ["preserved_state"]

_CONTAINERS = (dict, list, set)


def _contents(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    return list(value) if isinstance(value, list) else set(value)


def _restore(value: Any, saved: Any) -> None:
    """Put ``saved`` back into ``value`` where any item differs (by identity: never ``==``,
    which a tensor answers elementwise)."""
    if isinstance(value, dict):
        if value.keys() != saved.keys() or any(value[k] is not saved[k] for k in saved):
            value.clear()
            value.update(saved)
    elif isinstance(value, list):
        if len(value) != len(saved) or any(a is not b for a, b in zip(value, saved, strict=False)):
            value[:] = saved
    elif {id(a) for a in value} != {id(b) for b in saved}:
        value.clear()
        value.update(saved)


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run the body, then put every module of ``model`` back as it was (see the module
    docstring).

    >>> class Cached(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.cache = {}
    ...     def forward(self, x):
    ...         self.cache["last"] = x
    ...         self.calls = 1
    ...         return x
    >>> m = Cached()
    >>> with preserved_state(m):
    ...     _ = m(1)
    >>> m.cache, hasattr(m, "calls")
    ({}, False)
    """
    saved = []
    for m in model.modules():
        attrs = dict(vars(m))
        inner = {k: _contents(v) for k, v in attrs.items() if type(v) in _CONTAINERS}
        saved.append((m, attrs, inner))
    try:
        yield
    finally:
        for m, attrs, inner in saved:
            now = vars(m)
            for k in [k for k in now if k not in attrs]:
                del now[k]
            for k, v in attrs.items():
                if now.get(k, _MISSING) is not v:
                    now[k] = v
                if k in inner:
                    _restore(v, inner[k])


_MISSING = object()
