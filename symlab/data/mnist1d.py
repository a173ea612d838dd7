"""MNIST-1D (Greydanus and Kobak, 2020), built offline from the ``mnist1d`` package's templates.

Only the package's generator ``make_dataset(get_dataset_args())`` is used — never
``get_dataset(download=True)`` — so nothing is downloaded. With the defaults the tensors are
exactly the canonical data set (seed 42, 4000 train / 1000 test, length 40, 10 classes).
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from ._validate import non_negative, positive_int
from .dataset import Dataset
from .registry import register

__all__ = ["mnist1d"]


@functools.lru_cache(maxsize=8)
def _generate(
    seed: int, total: int, length: int, noise: tuple[float, ...], shuffle_seq: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Run the package's generator, leaving the global ``random``/``numpy`` state as it was."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = -(-total // 10) * 10  # the generator makes num_samples // 10 per class
    args.train_split = 1.0
    args.final_seq_length = length
    args.corr_noise_scale, args.iid_noise_scale, args.shear_scale = noise[:3]
    args.scale_coeff, args.max_translation = noise[3], int(noise[4])
    args.shuffle_seq = shuffle_seq
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        out = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = np.asarray(out["x"], dtype=np.float32), np.asarray(out["y"], dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


@register("mnist1d", default_seed=42)
def mnist1d(
    seed: int,
    *,
    n_train: int = 4000,
    n_test: int = 1000,
    length: int = 40,
    corr_noise_scale: float = 0.25,
    iid_noise_scale: float = 2e-2,
    shear_scale: float = 0.75,
    scale_coeff: float = 0.4,
    max_translation: int = 48,
    shuffle_seq: bool = False,
) -> Dataset:
    """MNIST-1D: 10 classes of 1-D signals of ``length`` points (Greydanus and Kobak 2020).

    The generator makes ``n_train + n_test`` examples (rounded up to a multiple of 10), shuffled
    by ``seed``; the first ``n_train`` are the training split, the next ``n_test`` the test split,
    as in the package. Noise options are passed to the generator unchanged. Inputs are
    ``[n, length]`` float32, standardised over the whole set as the package does. Results are
    cached per process (generation takes about two seconds).

    Reference accuracy (paper): MLP ≈ 68 %, CNN ≈ 94 % test accuracy.

    >>> ds = load("mnist1d")  # doctest: +SKIP
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes  # doctest: +SKIP
    (torch.Size([4000, 40]), torch.Size([1000, 40]), 10)
    """
    positive_int("n_train", n_train)
    positive_int("n_test", n_test, minimum=0)
    positive_int("length", length, minimum=2)
    positive_int("max_translation", max_translation)
    scales = (
        ("corr_noise_scale", corr_noise_scale),
        ("iid_noise_scale", iid_noise_scale),
        ("shear_scale", shear_scale),
        ("scale_coeff", scale_coeff),
    )
    noise = (*(non_negative(k, v) for k, v in scales), float(max_translation))
    x, y = _generate(seed, n_train + n_test, length, noise, bool(shuffle_seq))
    x_t, y_t = torch.tensor(x), torch.tensor(y)
    return Dataset(
        "mnist1d",
        x_t[:n_train],
        y_t[:n_train],
        x_t[n_train : n_train + n_test],
        y_t[n_train : n_train + n_test],
        task="classification",
        num_classes=10,
        seed=seed,
        options={
            "n_train": n_train,
            "n_test": n_test,
            "length": length,
            "corr_noise_scale": corr_noise_scale,
            "iid_noise_scale": iid_noise_scale,
            "shear_scale": shear_scale,
            "scale_coeff": scale_coeff,
            "max_translation": max_translation,
            "shuffle_seq": shuffle_seq,
        },
    )
