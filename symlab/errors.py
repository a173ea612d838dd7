"""Errors raised by symlab.

Every kind of bad input has its own subclass of :class:`SymlabError`, and every message says
what was wrong and what to do about it. Catch ``SymlabError`` to catch them all.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureMismatchError",
    "ArgumentError",
    "CheckpointError",
    "DataError",
    "DeviceError",
    "ExampleInputError",
    "FileFormatError",
    "ForeignElementError",
    "GraphError",
    "InvarianceError",
    "ModelTypeError",
    "NonFiniteError",
    "StateDictError",
    "SymlabError",
    "TooLargeError",
    "TraceError",
    "TrainingError",
    "UnsupportedOpError",
    "WidthError",
]


class SymlabError(Exception):
    """Base class of every error symlab raises on purpose.

    >>> import symlab as sl
    >>> try:
    ...     sl.data.load("no-such-data")
    ... except SymlabError as err:  # catches every deliberate symlab error
    ...     print(type(err).__name__)
    DataError
    """


class UnsupportedOpError(SymlabError):
    """An op (module type or function) has no symmetry rule; symlab refuses to guess."""


class TraceError(SymlabError):
    """Neither torch.fx nor its torch.export fallback could trace the model (typically
    data-dependent control flow), or the example input does not run through it.

    >>> import torch, symlab as sl
    >>> try:
    ...     sl.trace(torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.randn(4, 5))
    ... except TraceError as err:
    ...     print(str(err)[:49])
    the example input does not run through Sequential
    """


class GraphError(SymlabError):
    """An architecture graph is malformed: a cycle, a dangling node, an unknown input."""


class WidthError(SymlabError):
    """A width is neither a positive integer nor a positive sympy symbol/expression."""


class StateDictError(SymlabError):
    """A state_dict does not fit the group: missing or extra keys, or wrong shapes."""


class NonFiniteError(SymlabError):
    """Parameters, inputs or losses contain NaN or infinity."""


class ForeignElementError(SymlabError):
    """A group element was passed to a group it does not belong to."""


class InvarianceError(SymlabError):
    """A claimed symmetry changed the network's outputs (a soundness failure)."""


class TooLargeError(SymlabError):
    """A brute-force or exact computation would be too large to run."""


class DataError(SymlabError):
    """Data of the wrong shape, dtype or range for the model or the operation."""


class TrainingError(SymlabError):
    """Training went wrong (for example a non-finite loss) and was stopped."""


class CheckpointError(SymlabError):
    """A checkpoint is missing, truncated, unsafe, or does not fit the model."""


class ArchitectureMismatchError(SymlabError):
    """Two models that should share an architecture do not."""


class ArgumentError(SymlabError, ValueError):
    """An argument has a value the function cannot use (out of range, too few items, an
    unknown choice); the message names the argument, what was expected and what to pass."""


class ModelTypeError(SymlabError, TypeError):
    """Something other than a model was passed where a model is expected (for example a zoo
    name as a string: build the model first with ``symlab.nn.zoo.get(name)``)."""


class ExampleInputError(DataError):
    """An example input is missing where one is needed, or does not fit the model."""


class DeviceError(SymlabError):
    """A requested torch device does not exist or is not available on this machine."""


class FileFormatError(SymlabError):
    """A file is not one symlab wrote (or was written by a newer format), or it is damaged."""
