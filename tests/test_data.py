"""Tests of symlab.data: shapes, reproducibility (also across processes), options, bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import symlab.data as sd
from symlab.errors import DataError, NonFiniteError

# small versions of every data set, for speed
SMALL = {
    "mnist1d": {"n_train": 200, "n_test": 50},
    "digits": {},
    "teacher": {"n_train": 64, "n_test": 32},
    "gaussian_mixture": {"n_train": 60, "n_test": 30},
    "coherence": {"n_train": 64, "n_test": 32, "copies": 3},
}


def test_every_registered_data_set_is_covered():
    assert set(sd.available()) == set(SMALL)


def test_mnist1d_defaults_are_the_canonical_data_set():
    from mnist1d.data import get_dataset_args, make_dataset

    ds = sd.load("mnist1d")
    assert ds.seed == 42 and ds.num_classes == 10 and ds.task == "classification"
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    ref = make_dataset(get_dataset_args())
    assert np.array_equal(ds.x_train.numpy(), ref["x"].astype(np.float32))
    assert np.array_equal(ds.y_test.numpy(), ref["y_test"])


def test_mnist1d_leaves_global_random_state_alone():
    np.random.seed(5)
    random.seed(5)
    want_np, want_py = np.random.rand(), random.random()
    np.random.seed(5)
    random.seed(5)
    sd.load("mnist1d", seed=3, n_train=100, n_test=10)
    assert np.random.rand() == want_np and random.random() == want_py


def test_mnist1d_options_change_the_data():
    a = sd.load("mnist1d", n_train=100, n_test=20, length=24)
    assert a.x_train.shape == (100, 24) and a.x_test.shape == (20, 24)
    assert not torch.equal(
        a.x_train, sd.load("mnist1d", seed=1, n_train=100, n_test=20, length=24).x_train
    )


def test_digits_split_and_scaling():
    ds = sd.load("digits", seed=0)
    assert ds.n_train + ds.n_test == 1797 and ds.n_test == int(1797 * 0.2)
    assert (
        ds.x_train.shape[1] == 64 and float(ds.x_train.min()) >= 0 and float(ds.x_train.max()) <= 1
    )
    img = sd.load("digits", seed=0, flatten=False, scale="standard")
    assert img.input_shape == (1, 8, 8)
    assert torch.allclose(img.x_train.flatten(1).mean(0), torch.zeros(64), atol=1e-5)
    # the seed shuffles the split but the union of the data is the same
    other = sd.load("digits", seed=1)
    assert not torch.equal(ds.y_train, other.y_train)
    assert torch.equal(
        torch.cat([ds.y_train, ds.y_test]).bincount(),
        torch.cat([other.y_train, other.y_test]).bincount(),
    )


def test_teacher_labels_come_from_the_teacher():
    reg = sd.load(
        "teacher", seed=2, widths=(5, 16, 16, 2), activation="tanh", n_train=50, n_test=10
    )
    teacher = reg.meta["teacher"]
    assert reg.y_train.shape == (50, 2)
    assert torch.allclose(teacher(reg.x_train), reg.y_train)
    cls = sd.load(
        "teacher", seed=2, widths=(5, 16, 4), task="classification", n_train=200, n_test=10
    )
    assert cls.num_classes == 4
    assert torch.equal(cls.meta["teacher"](cls.x_train).argmax(1), cls.y_train)
    noisy = sd.load(
        "teacher",
        seed=2,
        widths=(5, 16, 16, 2),
        activation="tanh",
        noise=0.5,
        n_train=50,
        n_test=10,
    )
    assert not torch.allclose(noisy.y_train, reg.y_train)


def test_teacher_does_not_touch_global_torch_rng():
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    sd.load("teacher", seed=4, n_train=10, n_test=0)
    assert torch.equal(torch.rand(3), want)


def test_gaussian_mixture_is_balanced_and_separable():
    ds = sd.load(
        "gaussian_mixture", seed=0, num_classes=4, dim=3, n_train=400, n_test=100, separation=20.0
    )
    assert ds.y_train.bincount().tolist() == [100] * 4
    means = ds.meta["means"]
    nearest = torch.cdist(ds.x_test, means).argmin(1)
    assert (nearest == ds.y_test).float().mean() > 0.95


@pytest.mark.parametrize("copies", [1, 2, 5, 10])
@pytest.mark.parametrize("placement", ["first", "random"])
def test_coherence_sandbox_has_the_requested_coherence(copies, placement):
    ds = sd.load("coherence", seed=1, copies=copies, placement=placement, n_train=256, n_test=8)
    x = ds.x_train - ds.x_train.mean(0)
    u = torch.linalg.svd(x, full_matrices=False).Vh[:2].T  # input support, k = 2
    nu = float((u**2).sum(1).max())  # docs/concepts/identifiability.md: ν(U) = max_a ‖U_a‖²
    assert nu == pytest.approx(1 / copies, abs=1e-4)
    assert ds.meta["coherence"] == pytest.approx(1 / copies)
    z = ds.meta["z_train"]
    assert torch.allclose(ds.y_train[:, 0], torch.relu(z[:, 0] + z[:, 1]))
    assert int((ds.meta["embedding"] != 0).sum()) == 2 * copies


def test_coherence_defaults_follow_the_paper():
    ds = sd.load("coherence")
    assert ds.x_train.shape == (1024, 20) and ds.x_test.shape == (2048, 20)
    assert ds.task == "regression" and ds.y_train.shape == (1024, 1)
    assert sd.load("coherence", coherence=0.25).options["copies"] == 4


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_tensors_other_seed_other_tensors(name):
    a = sd.load(name, seed=7, **SMALL[name])
    b = sd.load(name, seed=7, **SMALL[name])
    c = sd.load(name, seed=8, **SMALL[name])
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)


def test_identical_tensors_in_a_fresh_process():
    code = (
        "import json, symlab.data as sd\n"
        f"small = {SMALL!r}\n"
        "print(json.dumps({n: sd.load(n, seed=11, **o).fingerprint() for n, o in small.items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    ours = {n: sd.load(n, seed=11, **o).fingerprint() for n, o in SMALL.items()}
    assert theirs == ours


@pytest.mark.parametrize(
    ("name", "options", "needle"),
    [
        ("mnist", {}, "available: ['coherence', 'digits'"),
        ("mnist1d", {"n_trian": 10}, "valid options: n_train=4000"),
        ("digits", {"scale": "minmax"}, "['unit', 'standard', 'none']"),
        ("digits", {"test_fraction": 1.5}, "test_fraction"),
        ("teacher", {"activation": "swish"}, "'relu'"),
        ("teacher", {"widths": (5, 3, 1), "task": "classification"}, "widths[-1] >= 2"),
        ("gaussian_mixture", {"n_train": -3}, "'n_train' must be an integer >= 1"),
        ("coherence", {"coherence": 0.3}, "'1/3'"),
        ("coherence", {"copies": 11}, "copies <= 10"),
        ("coherence", {"placement": "middle"}, "['first', 'random']"),
    ],
)
def test_bad_names_and_options_list_the_valid_choices(name, options, needle):
    with pytest.raises(DataError) as info:
        sd.load(name, **options)
    assert needle in str(info.value)


def test_bad_seed():
    with pytest.raises(DataError, match="seed"):
        sd.load("digits", seed=-1)


def test_dataset_container_validates_its_tensors():
    x = torch.randn(6, 3)
    with pytest.raises(DataError, match=r"lie in \[0, 2\]"):
        sd.Dataset(
            "bad",
            x,
            torch.tensor([0, 1, 2, 3, 0, 1]),
            x[:0],
            torch.zeros(0, dtype=torch.int64),
            task="classification",
            num_classes=3,
        )
    with pytest.raises(DataError, match="6 rows"):
        sd.from_tensors(x, torch.tensor([0, 1]))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(NonFiniteError):
        sd.from_tensors(bad, torch.zeros(6, dtype=torch.int64))
    with pytest.raises(DataError, match="int64"):
        sd.from_tensors(x, torch.zeros(6, dtype=torch.int32), task="classification", num_classes=2)


def test_from_tensors_subset_and_to():
    ds = sd.from_tensors(
        torch.randn(10, 4), torch.arange(10) % 3, torch.randn(5, 4), torch.arange(5) % 3
    )
    assert ds.task == "classification" and ds.num_classes == 3 and ds.output_dim == 3
    small = ds.subset(4, 2)
    assert small.n_train == 4 and small.n_test == 2 and torch.equal(small.x_train, ds.x_train[:4])
    assert ds.to("cpu").fingerprint() == ds.fingerprint()
    with pytest.raises(DataError):
        ds.subset(11)
    reg = sd.from_tensors(torch.randn(10, 4), torch.randn(10))
    assert reg.task == "regression" and reg.output_dim == 1 and reg.n_test == 0
    assert "regression" in repr(reg)
