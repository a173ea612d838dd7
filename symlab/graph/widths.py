"""Widths of feature axes: positive integers or sympy expressions in positive symbols."""

from __future__ import annotations

import numbers
from typing import Union

from symlab.errors import WidthError
from symlab.perf import lazy_import

sp = lazy_import("sympy")  # loaded on first use: ``import symlab`` stays cheap


__all__ = ["Width", "check_width", "is_concrete"]

Width = Union[int, "sp.Expr"]


def check_width(w: object, what: str = "width") -> Width:
    """Return ``w`` as a valid width or raise :class:`WidthError`.

    Valid widths are positive integers (Python or numpy) and sympy expressions that are not
    known to be non-positive (plain symbols count as positive integers).

    >>> check_width(3), check_width(sp.Symbol("n"))
    (3, n)
    """
    if isinstance(w, bool):
        raise WidthError(f"{what} must be a positive integer or a sympy symbol, got bool {w!r}")
    if isinstance(w, numbers.Integral):
        if int(w) <= 0:
            raise WidthError(f"{what} must be positive, got {int(w)}")
        return int(w)
    if isinstance(w, sp.Expr):
        if w.is_number:
            if not (w.is_integer and w.is_positive):
                raise WidthError(f"{what} must be a positive integer, got {w}")
            return int(w)
        if w.is_positive is False or w.is_integer is False:
            raise WidthError(
                f"{what} {w} is declared non-positive or non-integer; "
                "declare symbols as sympy.Symbol('n', positive=True, integer=True) or plain"
            )
        return w
    raise WidthError(
        f"{what} must be a positive integer or a sympy symbol/expression, got "
        f"{type(w).__name__} {w!r}"
    )


def is_concrete(w: Width) -> bool:
    """True for an integer width, False for a symbolic one."""
    return isinstance(w, int)
