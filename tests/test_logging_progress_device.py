"""Issue 15, item 6: a quiet-by-default ``symlab`` logger, progress bars that can be switched
off, and ``device=`` (CPU by default, a named error for a device that is not there)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
import torch

import symlab as sl
from symlab import errors
from symlab.device import resolve_device
from symlab.progress import progress, progress_bar, progress_enabled, set_progress


def test_the_symlab_logger_is_quiet_by_default():
    logger = logging.getLogger("symlab")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)


def test_derivation_training_and_fallback_are_logged(caplog):
    data = sl.data.load("gaussian_mixture", n_train=64, n_test=16)
    with caplog.at_level(logging.INFO, logger="symlab"):
        sl.symmetries(sl.nn.MLP([2, 8, 3]))
        sl.train.train(torch.nn.Linear(2, 3), data, sl.train.TrainConfig(steps=2, batch_size=8))

        class SizeCheck(torch.nn.Module):  # Python code on sizes: torch.fx gives up
            def __init__(self) -> None:
                super().__init__()
                self.fc = torch.nn.Linear(4, 3)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                assert x.shape[-1] <= 8
                return self.fc(x)

        sl.symmetries(SizeCheck(), torch.randn(2, 4))
    text = caplog.text
    assert "derived the symmetry group of MLP: 2 factors" in text
    assert "trained Linear for 2 steps on cpu" in text
    assert "read it through torch.export" in text


def test_nothing_reaches_stderr_without_configuration():
    # without symlab's NullHandler, Python's last-resort handler would print this warning
    code = "import logging, symlab; logging.getLogger('symlab.api').warning('planted')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "planted" not in proc.stderr, proc.stderr


def test_progress_bars_follow_the_switches(monkeypatch):
    monkeypatch.delenv("SYMLAB_PROGRESS", raising=False)
    assert progress_enabled(None) is False  # pytest's stderr is not a terminal
    monkeypatch.setenv("SYMLAB_PROGRESS", "1")
    assert progress_enabled(None) is True
    set_progress(False)
    try:
        assert progress_enabled(None) is False and progress_enabled(True) is True
    finally:
        set_progress(None)
    buf = io.StringIO()
    with progress_bar(3, True, "demo") as bar:
        bar.fp = buf
        bar.update(3)
    assert list(progress(range(4), enabled=False)) == [0, 1, 2, 3]


def test_merge_draws_a_bar_when_asked(capsys):
    models = [sl.nn.MLP([3, 6, 2], seed=s) for s in range(3)]
    sl.connect.merge(models, sl.symmetries(models[0]), progress=True)
    assert "merge" in capsys.readouterr().err
    sl.connect.merge(models, sl.symmetries(models[0]), progress=False)
    assert capsys.readouterr().err == ""


@pytest.fixture
def closed_bars(monkeypatch):
    """(description, count, total) of every symlab bar when it closes."""
    import symlab.progress as sp

    seen: list[tuple[str, int, int | None]] = []

    class Recording(sp.tqdm):
        def close(self):
            if not self.disable:
                seen.append((self.desc, self.n, self.total))
            super().close()

    monkeypatch.setattr(sp, "tqdm", Recording)
    return seen


@pytest.mark.parametrize(("strategy", "steps"), [("loop", 7), ("vmap", 21)])
def test_interpolation_counts_every_alpha_on_its_bar(capsys, closed_bars, strategy, steps):
    a, b = sl.nn.MLP([3, 6, 2], seed=0), sl.nn.MLP([3, 6, 2], seed=1)
    data = (torch.randn(40, 3), torch.randint(0, 2, (40,)))
    kw = dict(n_alphas=7, strategy=strategy, batch_size=16)
    plain = sl.connect.interpolate(a, b, data, progress=False, **kw)
    assert capsys.readouterr().err == "" and closed_bars == []
    shown = sl.connect.interpolate(a, b, data, progress=True, **kw)
    assert "interpolate" in capsys.readouterr().err
    # every α once (loop), or every α for each of the three batches (stacked)
    assert closed_bars == [("interpolate", steps, steps)]
    assert torch.equal(plain.loss, shown.loss)


def test_weight_matching_and_repair_draw_bars_when_asked(capsys, closed_bars):
    a, b = sl.nn.MLP([3, 6, 6, 2], seed=0), sl.nn.MLP([3, 6, 6, 2], seed=1)
    G = sl.symmetries(a)
    quiet = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, progress=False)
    assert capsys.readouterr().err == ""
    al = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, progress=True)
    assert "weight matching" in capsys.readouterr().err
    assert al.objective == quiet.objective
    assert closed_bars == [("weight matching", al.info["passes"], 100)]
    data = (torch.randn(40, 3), torch.randint(0, 2, (40,)))
    sl.connect.interpolate(a, b, data, n_alphas=5, repair=True, progress=True)
    assert "REPAIR" in capsys.readouterr().err
    assert closed_bars[1:] == [("interpolate: REPAIR", 5, 5), ("interpolate", 5, 5)]


def test_device_cpu_works_and_absent_devices_are_named():
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")
    data = sl.data.load("gaussian_mixture", n_train=32, n_test=16)
    cfg = sl.train.TrainConfig(steps=2, batch_size=8)
    r = sl.train.train(torch.nn.Linear(2, 3), data, cfg, device="cpu")
    assert r.steps == 2
    ens = sl.train.train_ensemble(lambda s: torch.nn.Linear(2, 3), 2, data, cfg, device="cpu")
    assert len(ens) == 2
    with pytest.raises(errors.DeviceError, match="not a torch device name"):
        sl.train.train(torch.nn.Linear(2, 3), data, cfg, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(errors.DeviceError, match="not available on this machine"):
            resolve_device("cuda")
    with pytest.raises(errors.DeviceError, match="not supported"):
        resolve_device("meta")
