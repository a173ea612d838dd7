"""A tqdm progress bar that stays quiet unless someone is watching."""

from __future__ import annotations

import sys

from tqdm.std import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int, enabled: bool | None, desc: str) -> tqdm:
    """A bar over ``total`` steps; ``enabled=None`` shows it only when stderr is a terminal."""
    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, desc=desc, disable=not show, leave=False, dynamic_ncols=True)
