"""Tests of symlab.train.checkpoint: round trips, mismatches, truncation, unsafe pickles, NaN."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from symlab.errors import CheckpointError, NonFiniteError
from symlab.nn.asymmetric import WAsymLinear
from symlab.train import build_model, check_state_dict, load_checkpoint, save_checkpoint


def net(seed: int = 0) -> nn.Module:
    return build_model(
        lambda s: nn.Sequential(WAsymLinear(4, 8, 2, seed=s), nn.ReLU(), nn.Linear(8, 3)), seed
    )


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path, suffix):
    a, b = net(0), net(1)
    path = save_checkpoint(a, tmp_path / f"model{suffix}", metadata={"seed": "0"})
    assert path.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    sd = load_checkpoint(path, b)
    for k, v in a.state_dict().items():
        assert torch.equal(sd[k], v) and torch.equal(b.state_dict()[k], v)  # buffers included


def test_safetensors_metadata_is_stored(tmp_path):
    from safetensors import safe_open

    path = save_checkpoint(net(), tmp_path / "m.safetensors", metadata={"data_seed": "3"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"data_seed": "3"}


def test_mismatched_keys_and_shapes_are_listed(tmp_path):
    path = save_checkpoint(net(), tmp_path / "m.safetensors")
    other = nn.Sequential(WAsymLinear(4, 8, 2), nn.ReLU(), nn.Linear(8, 5), nn.Linear(5, 2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, other)
    msg = str(info.value)
    assert "missing keys ['3.bias', '3.weight']" in msg
    assert "2.weight: checkpoint (3, 8) vs model (5, 8)" in msg
    before = other.state_dict()["0.weight"].clone()
    assert torch.equal(other.state_dict()["0.weight"], before)  # nothing was loaded
    small = nn.Sequential(WAsymLinear(4, 8, 2))
    with pytest.raises(CheckpointError, match=r"unexpected keys \['2.bias', '2.weight'\]"):
        check_state_dict(small, load_checkpoint(path))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_file(tmp_path, suffix):
    path = save_checkpoint(net(), tmp_path / f"m{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_pickle_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"weight": _RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_finite_weights_are_never_written(tmp_path):
    model = net()
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    with pytest.raises(NonFiniteError, match="2.weight"):
        save_checkpoint(model, path)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths(tmp_path):
    with pytest.raises(CheckpointError, match=r"\['.safetensors', '.pt', '.pth'\]"):
        save_checkpoint(net(), tmp_path / "m.bin")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.safetensors")
    (tmp_path / "list.pt").write_bytes(b"")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a flat dict of tensors"):
        load_checkpoint(tmp_path / "list.pt")
