"""Small option checks shared by the data builders; each raises :class:`DataError`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from symlab.errors import DataError


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else a DataError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"option {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def non_negative(name: str, value: Any) -> float:
    """``value`` as a float ``>= 0``, else a DataError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DataError(f"option {name!r} must be a number >= 0, got {value!r}")
    return float(value)


def choice(name: str, value: Any, valid: Iterable[str]) -> str:
    """``value`` if it is one of ``valid``, else a DataError listing them."""
    valid = list(valid)
    if value not in valid:
        raise DataError(f"option {name!r} must be one of {valid}, got {value!r}")
    return value
