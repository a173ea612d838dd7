"""What the ``symlab`` command line builds from its arguments: models from a zoo name or a
``module.path:factory`` with ``--option name=value`` arguments, input shapes, and the check that
a data set fits a model."""

from __future__ import annotations

import ast
import importlib
import re
from typing import Any

from symlab.errors import DataError, SymlabError

__all__ = ["ModelSpecError", "build_model", "check_fit", "parse_options", "parse_shape"]


class ModelSpecError(SymlabError):
    """A model given on the command line cannot be found or built."""


def _value(text: str) -> Any:
    """``"3"`` → 3, ``"40,128,10"`` → (40, 128, 10), ``"gelu"`` → ``"gelu"``, ``"a,b"`` →
    ``("a", "b")`` (a comma always makes a tuple, item by item)."""
    if "," in text and not text.strip().startswith(("(", "[", "{")):
        return tuple(_value(t.strip()) for t in text.split(",") if t.strip())
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_options(options: list[str] | None, flag: str = "--option") -> dict[str, Any]:
    """``["widths=40,64,10", "activation=gelu"]`` → ``{"widths": (40, 64, 10), ...}``."""
    out: dict[str, Any] = {}
    for opt in options or []:
        key, sep, val = opt.partition("=")
        if not sep or not key.isidentifier():
            raise ModelSpecError(f"{flag} {opt!r} must look like name=value (e.g. widths=40,64,10)")
        if key in out:
            raise ModelSpecError(f"{flag} {key} is given twice")
        out[key] = _value(val)
    return out


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``"3,32,32"`` or ``"3x32x32"`` → ``(3, 32, 32)``."""
    if text is None:
        return None
    try:
        shape = tuple(int(s) for s in re.split(r"[,x]", text.strip()))
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape) or len(shape) > 8 or max(shape) > 1 << 16:
        raise ModelSpecError(
            f"--input-shape {text!r} must be up to 8 positive ints like 3,32,32 (one example, "
            "without the batch dimension)"
        )
    return shape


def build_model(spec: str, options: dict[str, Any], seed: int = 0) -> tuple[Any, Any]:
    """``(model, example_input or None)`` from a zoo name or ``module.path:factory``."""
    import torch

    from symlab.nn import zoo

    def bad(exc: Exception) -> ModelSpecError:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ModelSpecError(f"cannot build {spec!r} with --option {options}: {msg}")

    if ":" not in spec:
        if spec not in zoo.names():
            raise ModelSpecError(
                f"unknown model {spec!r}: give a zoo name ({', '.join(zoo.names())}) "
                "or module.path:factory"
            )
        try:
            model = zoo.get(spec, seed=seed, **options)
            return model, zoo.example_input(spec, batch=2, **options)
        except SymlabError:
            raise
        except Exception as exc:  # the factory refused its arguments
            raise bad(exc) from None
    mod_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelSpecError(
            f"cannot import {spec!r}: {exc} (is its package on PYTHONPATH?)"
        ) from None
    try:
        model = factory(**options)
    except SymlabError:
        raise
    except Exception as exc:
        raise bad(exc) from None
    if not isinstance(model, torch.nn.Module):
        raise ModelSpecError(f"{spec} returned a {type(model).__name__}, not an nn.Module")
    return model, None


def check_fit(model: Any, example: Any, ds: Any, data: str, spec: str) -> None:
    """Refuse data that the model cannot read, or whose classes it does not output."""
    import torch

    from symlab.modes import eval_mode

    what = f"--data {data} (inputs of shape {ds.input_shape})"
    if example is not None and tuple(example.shape[1:]) != ds.input_shape:
        raise DataError(
            f"{what} does not fit --model {spec}, which takes inputs of shape "
            f"{tuple(example.shape[1:])}: choose data that fit the model, or --option values "
            "that fit the data (e.g. an MLP's first width)"
        )
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(ds.x_train[:2])
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{what} does not run through --model {spec} ({msg})") from None
    want = ds.output_dim
    if out.ndim != 2 or out.shape[-1] != want:
        what = f"{want} classes" if ds.task == "classification" else f"{want} regression target(s)"
        raise DataError(
            f"--model {spec} gives outputs of shape {tuple(out.shape[1:])} but --data {data} has "
            f"{what}: give the model {want} outputs"
        )
