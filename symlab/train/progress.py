"""The training loops' progress bar: :func:`symlab.progress.progress_bar` (one switch for all
of symlab's bars, off unless stderr is a terminal)."""

from __future__ import annotations

from symlab.progress import progress_bar

__all__ = ["progress_bar"]
