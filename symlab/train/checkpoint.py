"""Checkpoints: safetensors by default, ``.pt`` through ``torch.load(weights_only=True)`` only.

A checkpoint is a flat ``state_dict`` of tensors. Saving refuses non-finite tensors (a NaN run
never leaves a checkpoint behind) and writes atomically; loading refuses pickles that would run
code, reports truncated files, and checks keys and shapes against the model before touching it.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from symlab.errors import CheckpointError, NonFiniteError

__all__ = ["SUFFIXES", "check_state_dict", "load_checkpoint", "save_checkpoint"]

SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth")


def _suffix(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has suffix {path.suffix!r}; use one of {list(SUFFIXES)} "
            "(.safetensors recommended)"
        )
    return path.suffix


def save_checkpoint(
    obj: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``obj``'s ``state_dict`` (or a dict of tensors) to ``path``; return the path.

    ``.safetensors`` (recommended; ``metadata`` strings are stored in its header) or ``.pt``.
    The file appears only once complete (written to a temporary file, then renamed).

    Raises:
        NonFiniteError: a tensor holds NaN or inf (nothing is written).
        CheckpointError: an unsupported suffix.

    >>> import tempfile, pathlib
    >>> p = save_checkpoint(nn.Linear(2, 2), pathlib.Path(tempfile.mkdtemp()) / "m.safetensors")
    >>> sorted(load_checkpoint(p))
    ['bias', 'weight']
    """
    path = Path(path)
    suffix = _suffix(path)
    sd = obj.state_dict() if isinstance(obj, nn.Module) else dict(obj)
    tensors: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"entry {key!r} is a {type(t).__name__}, not a tensor")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(
                f"refusing to save {str(path)!r}: tensor {key!r} contains NaN or inf"
            )
        tensors[key] = t.detach().cpu().contiguous().clone()  # clone: no shared storage
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, tmp, metadata=dict(metadata) if metadata else None)
        else:
            torch.save(tensors, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _read(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if _suffix(path) == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is not a readable safetensors file (truncated or "
                f"corrupt: {err}); re-save it"
            ) from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(
            f"refused to load {str(path)!r}: it is a pickle that would construct arbitrary "
            f"objects or run code ({first}). Only tensors are loaded; re-save the weights with "
            "save_checkpoint (.safetensors)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read (truncated or corrupt: {first}); re-save "
            "it"
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(sd).__name__}, not a flat dict of tensors"
        )
    return sd


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` listing missing, extra and mis-shaped keys, if any.

    >>> from torch import nn
    >>> check_state_dict(nn.Linear(3, 2), nn.Linear(3, 2).state_dict())  # fits: no error
    >>> try:
    ...     check_state_dict(nn.Linear(3, 2), nn.Linear(4, 2).state_dict())
    ... except CheckpointError as e:
    ...     print("weight" in str(e))
    True
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    extra = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        if shapes:
            parts.append(f"shape mismatches {shapes}")
        raise CheckpointError(
            f"checkpoint does not fit {type(model).__name__}: "
            + "; ".join(parts)
            + ". Build the model with the architecture the checkpoint was saved from."
        )


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Read a checkpoint; with ``model``, check it fits and load it into the model.

    ``.pt`` files go through ``torch.load(weights_only=True)``, which refuses pickled code.

    Raises:
        CheckpointError: missing, truncated, unsafe or non-fitting checkpoints (the message
            lists missing/unexpected/mis-shaped keys).

    >>> import tempfile, os
    >>> from torch import nn
    >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> _ = save_checkpoint(nn.Linear(3, 2), path)
    >>> model = nn.Linear(3, 2)
    >>> sd = load_checkpoint(path, model)
    >>> sorted(sd)
    ['bias', 'weight']
    """
    sd = _read(Path(path))
    if model is not None:
        check_state_dict(model, sd)
        model.load_state_dict(sd)
    return sd
