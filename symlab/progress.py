"""Progress bars (tqdm) that stay quiet unless someone is watching, with one switch for all.

A bar shows when the call asks for one (``progress=True``), or, when the call leaves it open
(``None``), when :func:`set_progress` or the ``SYMLAB_PROGRESS`` environment variable (``1`` /
``0``) says so, and otherwise only when stderr is a terminal. Scripts, CI logs and
notebooks run by a test suite therefore get no bars unless they ask.

>>> set_progress(False)
>>> progress_enabled(None), progress_enabled(True)
(False, True)
>>> set_progress(None)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.std import tqdm

__all__ = ["progress", "progress_bar", "progress_enabled", "set_progress"]

T = TypeVar("T")
_DEFAULT: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Turn every symlab progress bar on (``True``) or off (``False``); ``None`` restores the
    default (the ``SYMLAB_PROGRESS`` variable, else only when stderr is a terminal).

    >>> set_progress(False); progress_enabled(None)
    False
    >>> set_progress(None)
    """
    global _DEFAULT
    _DEFAULT = enabled


def progress_enabled(enabled: bool | None = None) -> bool:
    """Whether a bar shows: the call's own choice, else the global one, else the environment
    variable, else whether stderr is a terminal.

    >>> progress_enabled(False)
    False
    """
    if enabled is not None:
        return bool(enabled)
    if _DEFAULT is not None:
        return _DEFAULT
    env = os.environ.get("SYMLAB_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    return sys.stderr.isatty()


def progress_bar(total: int | None, enabled: bool | None = None, desc: str = "") -> tqdm:
    """A bar over ``total`` steps (``None``: unknown; update it with ``bar.update()``); a
    context manager.

    >>> with progress_bar(3, enabled=False, desc="work") as bar:
    ...     bar.update()
    ...     bar.disable
    True
    """
    return tqdm(
        total=total, desc=desc, disable=not progress_enabled(enabled), leave=False,
        dynamic_ncols=True,
    )  # fmt: skip


def progress(
    items: Iterable[T], enabled: bool | None = None, desc: str = "", total: int | None = None
) -> Iterator[T]:
    """``items``, with a bar while they are consumed (``total`` defaults to ``len(items)``).

    >>> list(progress(range(3), enabled=False))
    [0, 1, 2]
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with tqdm(items, total=total, desc=desc, disable=not progress_enabled(enabled), leave=False,
              dynamic_ncols=True) as bar:  # fmt: skip
        yield from bar
