"""Training: a plain loop, vectorised ensembles over seeds, spawning, and checkpoints.

Sixteen MNIST-1D MLPs in a few lines (they train together as one vectorised ensemble)::

    from torch import nn
    from symlab.data import load
    from symlab.train import TrainConfig, train_ensemble

    data = load("mnist1d")
    make = lambda seed: nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256),
                                      nn.ReLU(), nn.Linear(256, 10))
    ens = train_ensemble(make, seeds=16, data=data, config=TrainConfig(epochs=30))
    print(ens.summary())

The init seed goes to the model factory, the ``data_seed`` to the batch order, so the same init
can be trained under different data orders (Frankle et al. 2020; see :func:`spawn`).
"""

from __future__ import annotations

from .batches import BatchOrder
from .checkpoint import check_state_dict, load_checkpoint, save_checkpoint
from .checks import build_model, trainable_masks
from .config import TrainConfig, TrainConfigError, lr_factor, make_optimizer
from .ensemble import Ensemble, train_ensemble, train_stacked
from .loop import train
from .result import TrainResult, evaluate
from .spawn import Spawn, spawn
from .stacked import StackedModels, chain_layers

__all__ = [
    "BatchOrder",
    "Ensemble",
    "Spawn",
    "StackedModels",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "build_model",
    "chain_layers",
    "check_state_dict",
    "evaluate",
    "load_checkpoint",
    "lr_factor",
    "make_optimizer",
    "save_checkpoint",
    "spawn",
    "train",
    "train_ensemble",
    "train_stacked",
    "trainable_masks",
]
