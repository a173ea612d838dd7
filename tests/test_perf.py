"""symlab.perf: the collector is held off during a derivation; small work runs on one thread."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import symlab as sl
from symlab.perf import is_small, paused_gc, single_thread


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


class _Spy(nn.Module):
    """Records torch's intra-op thread count at every forward."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.lin(x)


def test_single_thread_restores_the_callers_setting_even_on_error() -> None:
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError), single_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
        with single_thread(enabled=False):
            assert torch.get_num_threads() == 2  # negative control: disabled changes nothing
    finally:
        torch.set_num_threads(prev)


def test_small_checks_run_on_one_thread_large_ones_keep_the_callers_threads() -> None:
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = _Spy(4)
        G = sl.symmetries(small, torch.randn(2, 4))
        small.seen.clear()
        assert sl.check_invariance(small, G, torch.randn(3, 4), samples=2).passed
        assert small.seen and set(small.seen) == {1}
        assert torch.get_num_threads() == 2
        assert is_small(small) and not is_small(_Spy(2048))  # 4.2 M parameters
    finally:
        torch.set_num_threads(prev)
