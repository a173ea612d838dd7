"""Functions of vision libraries that torch.fx keeps as one call.

torchvision marks some of its functions with ``torch.fx.wrap``: a traced graph then holds one
``call_function`` node for the whole call instead of its ops. symlab reads the ones its
classification models use:

* ``torchvision.ops.stochastic_depth`` (and ``drop_block2d``/``drop_block3d``): the identity in
  eval mode or with ``p == 0`` (the function returns its input unchanged); in training mode they
  multiply by random noise and are refused;
* Swin's ``shifted_window_attention`` (v1 and v2), ``_get_relative_position_bias`` and
  ``_patch_merging_pad``: *opaque* — their tensor inputs (parameters included) and output are
  fixed, which is sound for any pure function of its arguments.

A function is read only when the traced target *is* the library's function (looked up by module
and name, compared by identity), so a look-alike of the same name is not. The library is never
imported here: a function of a library that was not imported cannot be in a traced graph.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch.fx as fx

from symlab.frontend.readers import arg

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["LIBRARY_CALLS", "library_reader"]

Reader = Callable[["Converter", fx.Node], bool]


def _identity_in_eval(p_index: int, training_index: int) -> Reader:
    """A reader for ``f(input, p, ..., training)`` that returns ``input`` unchanged when
    ``training`` is False or ``p == 0`` (Python constants of the traced call)."""

    def read(cv: Converter, node: fx.Node) -> bool:
        x = arg(node, 0, "input")
        p = arg(node, p_index, "p")
        training = arg(node, training_index, "training", True)
        if not (isinstance(x, fx.Node) and x in cv.name):
            return False
        if training is False or (isinstance(p, int | float) and not isinstance(p, bool) and p == 0):
            cv.emit(node, f"@{node.name}", "activation", [cv.name[x]], fn="identity")
            return True
        return False  # random noise in training mode: refused by the caller

    return read


def _opaque(cv: Converter, node: fx.Node) -> bool:
    if not cv.tensor_args(node) and not any(
        isinstance(a, fx.Node) and a.op == "get_attr" for a in (*node.args, *node.kwargs.values())
    ):
        return False
    cv.opaque(node)
    return True


LIBRARY_CALLS: dict[tuple[str, str], Reader] = {
    ("torchvision.ops.stochastic_depth", "stochastic_depth"): _identity_in_eval(1, 3),
    ("torchvision.ops.drop_block", "drop_block2d"): _identity_in_eval(1, 5),
    ("torchvision.ops.drop_block", "drop_block3d"): _identity_in_eval(1, 5),
    ("torchvision.models.swin_transformer", "shifted_window_attention"): _opaque,
    ("torchvision.models.swin_transformer", "_get_relative_position_bias"): _opaque,
    ("torchvision.models.swin_transformer", "_patch_merging_pad"): _opaque,
}
"""``(module, name)`` of a library function → its reader ``reader(converter, node) -> bool``
(True: it emitted the node; False: not read, the converter refuses the call)."""


def library_reader(fn: Any) -> Reader | None:
    """The reader of ``fn`` when it is one of :data:`LIBRARY_CALLS`' functions (by identity with
    the library's own, in an imported library); None otherwise.

    >>> library_reader(len) is None
    True
    >>> def stochastic_depth(input, p, mode, training=True):  # a look-alike: not torchvision's
    ...     return input
    >>> stochastic_depth.__module__ = "torchvision.ops.stochastic_depth"
    >>> library_reader(stochastic_depth) is None
    True
    """
    key = (getattr(fn, "__module__", None), getattr(fn, "__name__", None))
    reader = LIBRARY_CALLS.get(key)  # type: ignore[arg-type]
    module = sys.modules.get(key[0]) if reader is not None else None  # type: ignore[arg-type]
    if module is None or getattr(module, key[1], None) is not fn:  # type: ignore[arg-type]
        return None
    return reader
