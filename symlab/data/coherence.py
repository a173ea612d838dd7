"""The coherence sandbox of Bürgin, Herbst, Lin, Jegelka (ICML 2026);
see docs/concepts/data.md.

A two-dimensional teacher ``y = relu(z1 + z2)``, ``z ~ N(0, I_2)``, embedded in ``d = 20`` ambient
dimensions. Each latent coordinate is copied onto ``copies`` ambient coordinates (disjoint sets,
each copy scaled by ``1/sqrt(copies)``), so the embedding ``A`` (``x = A z``) has orthonormal
columns, the input support is ``U = A`` up to rotation, and its coherence
``ν(U) = max_a ‖U_{a,:}‖²`` is exactly ``1 / copies``. The scaling keeps ``‖x‖ = ‖z‖``, so only the
coherence changes between settings, not the scale of the inputs.
"""

from __future__ import annotations

import math

import torch

from symlab.errors import DataError
from symlab.seeding import generator

from ._validate import choice, non_negative, positive_int
from .dataset import Dataset
from .registry import register

__all__ = ["coherence_embedding", "coherence_sandbox"]


def coherence_embedding(
    ambient_dim: int, latent_dim: int, copies: int, perm: torch.Tensor | None = None
) -> torch.Tensor:
    """The ``[ambient_dim, latent_dim]`` embedding with coherence ``1 / copies``.

    Latent coordinate ``j`` occupies ambient coordinates ``perm[j*copies:(j+1)*copies]``
    (``perm`` defaults to the identity) with value ``1/sqrt(copies)``.

    >>> coherence_embedding(4, 2, 2)
    tensor([[0.7071, 0.0000],
            [0.7071, 0.0000],
            [0.0000, 0.7071],
            [0.0000, 0.7071]])
    """
    if copies * latent_dim > ambient_dim:
        raise DataError(
            f"{latent_dim} latent coordinates × {copies} copies need at least "
            f"{copies * latent_dim} ambient dimensions, got ambient_dim={ambient_dim}; "
            f"use copies <= {ambient_dim // latent_dim}"
        )
    perm = torch.arange(ambient_dim) if perm is None else perm
    a = torch.zeros(ambient_dim, latent_dim)
    for j in range(latent_dim):
        a[perm[j * copies : (j + 1) * copies], j] = 1.0 / math.sqrt(copies)
    return a


@register("coherence")
def coherence_sandbox(
    seed: int,
    *,
    ambient_dim: int = 20,
    latent_dim: int = 2,
    copies: int = 1,
    coherence: float | None = None,
    n_train: int = 1024,
    n_test: int = 2048,
    noise: float = 0.0,
    placement: str = "first",
) -> Dataset:
    """Regression data ``x = A z``, ``y = relu(Σ_j z_j) + noise · N(0, 1)`` (Bürgin et al.).

    Defaults follow the paper: 20 ambient dims, teacher ``relu(z1 + z2)``, 1024 train / 2048
    test points. Coherence is ``1 / copies``; pass ``coherence`` instead of ``copies`` to ask for
    it directly (it must be ``1/m`` for an integer ``m <= ambient_dim // latent_dim``).
    ``placement="first"`` puts the copies on the first coordinates, ``"random"`` on a seeded
    random subset. ``meta`` holds ``coherence``, the embedding ``A`` and the latents.

    >>> ds = load("coherence", seed=0, copies=4)  # doctest: +SKIP
    >>> ds.meta["coherence"], ds.input_shape  # doctest: +SKIP
    (0.25, (20,))
    """
    positive_int("ambient_dim", ambient_dim)
    positive_int("latent_dim", latent_dim)
    positive_int("n_train", n_train)
    positive_int("n_test", n_test, minimum=0)
    non_negative("noise", noise)
    choice("placement", placement, ("first", "random"))
    max_copies = ambient_dim // latent_dim
    if coherence is not None:
        valid = [f"1/{m}" for m in range(1, max_copies + 1)]
        m = round(1.0 / coherence) if isinstance(coherence, int | float) and coherence > 0 else 0
        if not 1 <= m <= max_copies or abs(1.0 / m - coherence) > 1e-9:
            raise DataError(
                f"coherence {coherence!r} is not reachable with ambient_dim={ambient_dim}, "
                f"latent_dim={latent_dim}; valid values: {valid}"
            )
        copies = m
    positive_int("copies", copies)
    g = generator(seed, 13)
    perm = torch.randperm(ambient_dim, generator=g) if placement == "random" else None
    a = coherence_embedding(ambient_dim, latent_dim, copies, perm)
    z = torch.randn(n_train + n_test, latent_dim, generator=g)
    x = z @ a.T
    y = torch.relu(z.sum(1, keepdim=True)) + noise * torch.randn(len(z), 1, generator=g)
    return Dataset(
        "coherence",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        task="regression",
        seed=seed,
        options={
            "ambient_dim": ambient_dim,
            "latent_dim": latent_dim,
            "copies": copies,
            "coherence": coherence,
            "n_train": n_train,
            "n_test": n_test,
            "noise": noise,
            "placement": placement,
        },
        meta={
            "coherence": 1.0 / copies,
            "embedding": a,
            "z_train": z[:n_train],
            "z_test": z[n_train:],
        },
    )
