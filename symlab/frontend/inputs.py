"""Example inputs as users give them: one tensor, a tuple of positional arguments, a dict of
keyword arguments (a Hugging Face tokenizer's output), or positional arguments plus
``kwargs=``. :class:`ExampleInputs` holds them as ``(args, kwargs)`` for the front-ends and the
invariance check, which call the model the same way."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from symlab.errors import DataError

__all__ = ["ExampleInputs"]


@dataclass(frozen=True)
class ExampleInputs:
    """The positional and keyword arguments of one call of a model.

    >>> x = torch.ones(2, 3)
    >>> ExampleInputs.of(x).args == (x,), ExampleInputs.of({"input_ids": x}).kwargs.keys()
    (True, dict_keys(['input_ids']))
    >>> ExampleInputs.of((x,), kwargs={"attention_mask": x}).tensors() == [x, x]
    True
    """

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, example_input: Any = None, kwargs: Mapping[str, Any] | None = None
    ) -> ExampleInputs:
        """Normalise ``example_input`` (a tensor, a tuple of positional arguments, a dict of
        keyword arguments, or an :class:`ExampleInputs`) and ``kwargs``."""
        if isinstance(example_input, ExampleInputs):
            if kwargs:
                return cls(example_input.args, {**example_input.kwargs, **kwargs})
            return example_input
        if isinstance(example_input, Mapping):
            if kwargs:
                raise DataError("give keyword inputs either as a dict or as kwargs=, not both")
            return cls((), {str(k): v for k, v in example_input.items()})
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise DataError(f"kwargs must be a dict of keyword inputs, got {type(kwargs).__name__}")
        if example_input is None:
            args: tuple[Any, ...] = ()
        elif isinstance(example_input, tuple):
            args = tuple(example_input)
        else:
            args = (example_input,)
        return cls(args, dict(kwargs or {}))

    @property
    def empty(self) -> bool:
        return not self.args and not self.kwargs

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor among the inputs (nested lists, tuples and dicts included), in order."""
        return [
            t for t in pytree.tree_leaves((self.args, self.kwargs)) if isinstance(t, torch.Tensor)
        ]

    def map(self, fn: Any) -> ExampleInputs:
        """The inputs with ``fn`` applied to every tensor (``.clone``, ``.to(dtype)``, …)."""
        args, kwargs = pytree.tree_map(
            lambda t: fn(t) if isinstance(t, torch.Tensor) else t, (self.args, self.kwargs)
        )
        return ExampleInputs(tuple(args), dict(kwargs))

    def call(self, model: nn.Module) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)

    def bind(self, model: nn.Module) -> inspect.BoundArguments | None:
        """The inputs bound to the parameters of ``model.forward`` (defaults applied), or None
        when its signature cannot be read or does not take them."""
        try:
            sig = inspect.signature(model.forward)
            bound = sig.bind(*self.args, **self.kwargs)
        except (TypeError, ValueError):
            return None
        bound.apply_defaults()
        return bound
