"""Issue 15, item 6: ``device=`` on the experiments (CPU by default) and ``--device`` on
``symlab experiment run``; experiments that cannot train elsewhere say so."""

from __future__ import annotations

import pytest
import torch

import experiments
from experiments._common import train_models
from symlab.cli import _with_device
from symlab.data import Dataset
from symlab.errors import ArgumentError
from symlab.nn import MLP
from symlab.train import TrainConfig

ON_DEVICE = ["e1", "e2", "e3", "e4", "e6", "e7"]


@pytest.mark.parametrize("name", ON_DEVICE)
def test_experiments_train_on_the_cpu_unless_asked(name):
    sweep = experiments.get(name).sweep("small")
    assert sweep.base.device == "cpu"
    assert _with_device(sweep, "cpu", name) is sweep  # the CPU changes no job


def test_a_device_reaches_every_job_and_cpu_only_experiments_refuse(monkeypatch):
    import symlab.device

    monkeypatch.setattr(symlab.device, "resolve_device", lambda d: torch.device("cuda", 0))
    sweep = _with_device(experiments.get("e1").sweep("small"), "cuda:0", "e1")
    assert {job.config.device for job in sweep.jobs()} == {"cuda:0"}
    with pytest.raises(ArgumentError, match="e5 has no device option"):
        _with_device(experiments.get("e5").sweep("small"), "cuda:0", "e5")


def test_trained_models_come_back_on_the_cpu_and_train_as_without_a_device():
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    ds = Dataset("toy", x, y, x, y, task="classification", num_classes=2)
    cfg = TrainConfig(epochs=2, progress=False)
    models, stats = train_models(lambda s: MLP([3, 4, 2], seed=s), [0, 1], ds, cfg, device="cpu")
    assert all(p.device.type == "cpu" for m in models for p in m.parameters())
    again, _ = train_models(lambda s: MLP([3, 4, 2], seed=s), [0, 1], ds, cfg)
    for m, n in zip(models, again, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), n.parameters(), strict=True))
    assert [s["test_acc"] for s in stats] != [None, None]
