"""Which torch device to compute on: CPU unless asked, and a named error for one that is not
there (a CPU-only torch build asked for ``cuda``, a GPU index beyond the count, a typo).

>>> resolve_device(None), resolve_device("cpu")
(device(type='cpu'), device(type='cpu'))
"""

from __future__ import annotations

from typing import Any

import torch

from symlab.errors import DeviceError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a :class:`torch.device` that exists here (``None``: the CPU).

    Raises:
        DeviceError: not a device name, or not available on this machine.

    >>> try:
    ...     resolve_device("gpu")
    ... except DeviceError as err:
    ...     print("not a torch device name" in str(err))
    True
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(
            f"device {device!r} is not a torch device name; use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cpu":
        return dev
    backend: Any = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None)}.get(dev.type)
    if backend is None:
        raise DeviceError(f"device {str(dev)!r} is not supported by symlab; use cpu, cuda or mps")
    if not backend.is_available():
        raise DeviceError(
            f"device {str(dev)!r} is not available on this machine (torch {torch.__version__}); "
            "use cpu (the default)"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {str(dev)!r} does not exist: this machine has {torch.cuda.device_count()} "
            "CUDA device(s)"
        )
    return dev
