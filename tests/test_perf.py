"""symlab.perf.paused_gc: the collector is held off during a derivation and restored after."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import symlab as sl
from symlab.perf import paused_gc


def test_symmetries_restores_the_collector_even_on_error() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sl.symmetries(net, torch.randn(2, 3))
    assert gc.isenabled()
    with pytest.raises(sl.errors.SymlabError):
        sl.trace(net, torch.randn(2, 5))  # wrong input width: the forward pass fails
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()
