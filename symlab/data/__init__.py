"""Offline data sets: MNIST-1D, digits, teacher–student, Gaussian mixtures, coherence sandbox.

Nothing is downloaded. :func:`load` builds any registered data set by name from a seed; the same
seed gives identical tensors in every process (docs/concepts/data.md). Names: ``"mnist1d"``,
``"digits"``, ``"teacher"``, ``"gaussian_mixture"``, ``"coherence"``; :func:`available` lists
them with their options.

>>> import symlab.data as sd
>>> ds = sd.load("coherence", seed=0, copies=2)
>>> ds.input_shape, ds.meta["coherence"]
((20,), 0.5)
"""

from __future__ import annotations

from . import coherence, digits, mixture, mnist1d, teacher  # noqa: F401  (registers builders)
from .coherence import coherence_embedding
from .dataset import TASKS, Dataset, Task, from_tensors
from .registry import available, load, register
from .teacher import ACTIVATIONS, random_mlp

__all__ = [
    "ACTIVATIONS",
    "TASKS",
    "Dataset",
    "Task",
    "available",
    "coherence_embedding",
    "from_tensors",
    "load",
    "random_mlp",
    "register",
]
