"""Tests of symlab.train: the loop, vectorised ensembles, spawning, asymmetric layers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import symlab.data as sd
from symlab.errors import ArchitectureMismatchError, DataError, TrainingError
from symlab.nn.asymmetric import FiGLU, WAsymLinear
from symlab.train import (
    StackedModels,
    TrainConfig,
    TrainConfigError,
    build_model,
    chain_layers,
    lr_factor,
    spawn,
    train,
    train_ensemble,
    train_stacked,
)

CFG = TrainConfig(lr=1e-2, epochs=3, batch_size=32, schedule="cosine", warmup_steps=2)


@pytest.fixture(scope="module")
def mixture() -> sd.Dataset:
    return sd.load("gaussian_mixture", seed=0, num_classes=3, dim=6, n_train=192, n_test=96)


def mlp(seed: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def asym_mlp(seed: int) -> nn.Module:
    return nn.Sequential(
        WAsymLinear(6, 16, num_fixed=3, kappa=1.0, seed=seed),
        nn.ReLU(),
        WAsymLinear(16, 3, num_fixed=8, kappa=0.5, seed=seed + 1000),
    )


def figlu_mlp(seed: int) -> nn.Module:  # not a Linear/activation chain: the vmap path
    return nn.Sequential(
        WAsymLinear(6, 16, num_fixed=3, kappa=1.0, seed=seed),
        FiGLU(16, seed=seed),
        nn.LayerNorm(16),
        nn.Linear(16, 3),
    )


def max_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


# -- the plain loop -----------------------------------------------------------------------------
def test_train_learns_and_reports(mixture):
    net = build_model(mlp, 0)
    before = train(build_model(mlp, 0), mixture, TrainConfig(steps=1, lr=0.0)).test_loss
    res = train(net, mixture, TrainConfig(lr=1e-2, epochs=20, batch_size=32), data_seed=0)
    assert (
        res.steps == 20 * 6 and res.step_losses.shape == (120,) and res.epoch_losses.shape == (20,)
    )
    assert res.test_acc is not None and res.test_acc > 0.8
    assert res.test_loss < before
    assert res.epoch_losses[-1] < res.epoch_losses[0]
    assert "test_acc" in res.summary()


def test_init_seed_and_data_seed_are_separate(mixture):
    a, b, c = (build_model(mlp, 0) for _ in range(3))
    d = build_model(mlp, 1)
    assert max_diff(a, b) == 0 and max_diff(a, d) > 0  # the init seed fixes the init
    train(a, mixture, CFG, data_seed=0)
    train(b, mixture, CFG, data_seed=0)
    train(c, mixture, CFG, data_seed=1)
    assert max_diff(a, b) == 0  # same init, same data order: identical
    assert max_diff(a, c) > 1e-4  # same init, other data order: different


def test_build_model_leaves_global_rng_alone():
    torch.manual_seed(3)
    want = torch.rand(2)
    torch.manual_seed(3)
    build_model(mlp, 5)
    assert torch.equal(torch.rand(2), want)


def test_schedules_and_config_validation():
    const = TrainConfig()
    assert [lr_factor(const, s, 10) for s in (0, 9)] == [1.0, 1.0]
    lin = TrainConfig(schedule="linear", warmup_steps=4)
    assert [lr_factor(lin, s, 12) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(lin, 8, 12) == pytest.approx(0.5)
    cos = TrainConfig(schedule="cosine")
    assert lr_factor(cos, 5, 10) == pytest.approx(0.5) and lr_factor(cos, 9, 10) < 0.03
    assert TrainConfig(batch_size=50, epochs=2).total_steps(120) == 6
    assert TrainConfig(batch_size=50, drop_last=True, steps=7).total_steps(120) == 7
    with pytest.raises(TrainConfigError, match=r"\['sgd', 'adam', 'adamw'\]"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(TrainConfigError, match="lr"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(TrainConfigError, match="schedule"):
        TrainConfig(schedule="step")


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_the_schedule_reaches_the_optimizer(mixture, optimizer):
    cfg = TrainConfig(optimizer=optimizer, lr=0.0, momentum=0.9, weight_decay=0.1, steps=3)
    net = build_model(mlp, 0)
    ref = build_model(mlp, 0)
    train(net, mixture, cfg)
    assert max_diff(net, ref) == 0  # lr 0: nothing moves, even with weight decay


def test_resume_equals_uninterrupted(mixture):
    full, part = build_model(mlp, 0), build_model(mlp, 0)
    train(full, mixture, CFG, data_seed=3)
    first = train(part, mixture, CFG, data_seed=3, stop_at=7)
    assert first.steps == 7
    train(part, mixture, CFG, data_seed=3, start_step=7, optimizer_state=first.optimizer_state)
    assert max_diff(full, part) < 1e-6


def test_progress_is_quiet_unless_asked(mixture, capsys):
    train(build_model(mlp, 0), mixture, TrainConfig(steps=3))
    assert capsys.readouterr().err == ""
    train(build_model(mlp, 0), mixture, TrainConfig(steps=3, progress=True))
    assert "train" in capsys.readouterr().err


# -- vectorised ensembles -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factory", "method", "path"),
    [
        (mlp, "auto", "fast"),
        (mlp, "vmap", "vmap"),
        (asym_mlp, "auto", "fast"),
        (asym_mlp, "vmap", "vmap"),
        (figlu_mlp, "auto", "vmap"),
    ],
)
def test_ensemble_equals_sequential_training(mixture, factory, method, path):
    cfg = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=1e-2, epochs=2, batch_size=32)
    ens = train_ensemble(factory, [0, 1, 2], mixture, cfg, data_seeds=[5, 7, 7], method=method)
    assert ens.method == path and len(ens) == 3
    for seed, dseed, model, res in zip(
        ens.seeds, ens.data_seeds, ens.models, ens.results, strict=True
    ):
        ref = build_model(factory, seed)
        ref_res = train(ref, mixture, cfg, data_seed=dseed)
        assert max_diff(model, ref) < 1e-5
        assert torch.allclose(res.step_losses, ref_res.step_losses, atol=1e-5)
        assert res.test_acc == pytest.approx(ref_res.test_acc)
    # negative control: members with other seeds really differ
    assert max_diff(ens[0], ens[1]) > 1e-3


def test_sgd_momentum_ensemble_equals_sequential(mixture):
    cfg = TrainConfig(
        optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, steps=10, batch_size=16
    )
    ens = train_ensemble(mlp, [3, 4], mixture, cfg)
    for seed, model in zip(ens.seeds, ens.models, strict=True):
        ref = build_model(mlp, seed)
        train(ref, mixture, cfg, data_seed=seed)
        assert max_diff(model, ref) < 1e-5


def test_fast_path_detection():
    assert chain_layers(mlp(0)) is not None and chain_layers(asym_mlp(0)) is not None
    assert chain_layers(figlu_mlp(0)) is None
    assert chain_layers(nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Linear(2, 2))) is None

    class Residual(nn.Module):  # leaves look like a chain, the forward is not one
        def __init__(self) -> None:
            super().__init__()
            self.a, self.act, self.b = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.b(self.act(self.a(x)))

    models = [build_model(lambda s: Residual(), s) for s in range(2)]
    assert StackedModels(models, probe=torch.randn(8, 4)).method == "vmap"
    with pytest.raises(TrainingError, match="method='vmap'"):
        StackedModels(models, "fast", probe=torch.randn(8, 4))


def test_fast_path_never_writes_into_the_data(mixture):
    data = sd.from_tensors(mixture.x_train.clone(), mixture.y_train.clone())
    before = data.x_train.clone()
    make = lambda s: nn.Sequential(nn.ReLU(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))  # noqa: E731
    ens = train_ensemble(make, 2, data, TrainConfig(steps=3))
    assert ens.method == "fast" and torch.equal(data.x_train, before)


def test_ensemble_members_must_share_an_architecture(mixture):
    models = [mlp(0), nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))]
    with pytest.raises(ArchitectureMismatchError, match="model 1"):
        train_stacked(models, mixture, CFG, data_seeds=[0, 1])


@pytest.mark.parametrize(("n_in", "n_out"), [(5, 40), (40, 7), (12, 12)])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_stacked_linear_matches_autograd(n_in, n_out, relu, bias):
    from symlab.train.stacked_linear import stacked_linear

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 9, n_in, generator=gen, requires_grad=True)
    w = torch.randn(3, n_out, n_in, generator=gen, requires_grad=True)
    b = torch.randn(3, n_out, generator=gen, requires_grad=True) if bias else None
    up = torch.randn(3, n_out, 4, generator=gen)
    got = stacked_linear(x, w, b, relu=relu, own_grad=True) @ up  # grad arrives fresh
    want = x @ w.mT + (b.unsqueeze(1) if b is not None else 0)
    want = (want.relu() if relu else want) @ up
    assert torch.allclose(got, want, atol=1e-5)
    leaves = [t for t in (x, w, b) if t is not None]
    g_got = torch.autograd.grad(got.square().sum(), leaves)
    g_want = torch.autograd.grad(want.square().sum(), leaves)
    for a, c in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, c, atol=1e-4)


def test_stacked_cross_entropy_matches_torch():
    from symlab.train.stacked_linear import stacked_cross_entropy

    gen = torch.Generator().manual_seed(1)
    z = (torch.randn(4, 10, 6, generator=gen) * 5).mT.requires_grad_()  # a transposed view
    y = torch.randint(0, 6, (4, 6), generator=gen)
    weights = torch.arange(1.0, 5.0)
    got = stacked_cross_entropy(z, y)
    want = torch.nn.functional.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none")
    want = want.view(4, 6).mean(1)
    assert torch.allclose(got, want, atol=1e-6)
    (g_got,) = torch.autograd.grad((got * weights).sum(), z)
    (g_want,) = torch.autograd.grad((want * weights).sum(), z)
    assert torch.allclose(g_got, g_want, atol=1e-6)


# -- asymmetric layers: fixed entries stay fixed ------------------------------------------------
@pytest.mark.parametrize("path", ["sequential", "fast", "vmap"])
def test_fixed_entries_stay_fixed(mixture, path):
    cfg = TrainConfig(
        optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.1, steps=15, batch_size=32
    )
    models = [build_model(asym_mlp, s) for s in range(2)]
    with torch.no_grad():  # worst case: non-zero values in the fixed positions of `weight`
        for m in models:
            for layer in (m[0], m[2]):
                layer.weight.add_(torch.randn(layer.weight.shape) * (1 - layer.mask))
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    if path == "sequential":
        for m in models:
            train(m, mixture, cfg)
    else:
        train_stacked(
            models, mixture, cfg, data_seeds=[0, 1], method="auto" if path == "fast" else path
        )
    for m, old in zip(models, before, strict=True):
        for name in ("0", "2"):
            layer = m.get_submodule(name)
            fixed = layer.mask == 0
            assert torch.equal(layer.mask, old[f"{name}.mask"])  # buffers untouched
            assert torch.equal(layer.fixed, old[f"{name}.fixed"])
            assert torch.equal(layer.weight[fixed], old[f"{name}.weight"][fixed])  # frozen entries
            assert not torch.allclose(
                layer.weight[~fixed], old[f"{name}.weight"][~fixed]
            )  # control
            eff = layer.effective_weight()
            assert torch.equal(eff[fixed], old[f"{name}.fixed"][fixed])


def test_masked_entries_get_zero_gradient_in_the_stacked_forward(mixture):
    models = [build_model(asym_mlp, s) for s in range(3)]
    stack = StackedModels(models, probe=mixture.x_train[:8])
    assert stack.method == "fast"
    x = mixture.x_train[:20].expand(3, 20, 6)
    stack.forward(x).square().sum().backward()
    for p, mask, _ in stack.frozen_entries():
        assert p.grad is not None
        assert float(p.grad[mask == 0].abs().max()) == 0.0
        assert float(p.grad[mask == 1].abs().max()) > 0.0


# -- spawning -----------------------------------------------------------------------------------
def test_spawning_forks_at_k(mixture):
    init = build_model(mlp, 0)
    snapshot = {k: v.clone() for k, v in init.state_dict().items()}
    sp = spawn(init, mixture, CFG, k=5, data_seeds=[0, 1, 2], parent_data_seed=0)
    assert all(torch.equal(v, init.state_dict()[k]) for k, v in snapshot.items())  # untouched
    total = CFG.total_steps(mixture.n_train)
    assert sp.parent_result.steps == 5 and [r.steps for r in sp.results] == [total] * 3
    assert [len(r.step_losses) for r in sp.results] == [total - 5] * 3
    # the parent is the unforked run stopped at k
    at_k = build_model(mlp, 0)
    train(at_k, mixture, CFG, data_seed=0, stop_at=5)
    assert max_diff(sp.parent, at_k) < 1e-6
    # a child with the parent's data order reproduces the unforked run; the others differ
    full = build_model(mlp, 0)
    train(full, mixture, CFG, data_seed=0)
    assert max_diff(sp.children[0], full) < 1e-5
    assert max_diff(sp.children[1], full) > 1e-4 and max_diff(sp.children[1], sp.children[2]) > 1e-4


# -- bad input ----------------------------------------------------------------------------------
def test_wrong_input_width_is_a_data_error(mixture):
    with pytest.raises(DataError, match="takes 5 features .* build the model with input width 6"):
        train(nn.Sequential(nn.Linear(5, 3)), mixture, CFG)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(7, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    with pytest.raises(DataError, match=r"does not accept inputs of shape \(2, 6\)"):
        train_ensemble(lambda s: Wrapped(), 2, mixture, CFG)


def test_labels_out_of_range_are_a_data_error(mixture):
    with pytest.raises(
        DataError, match="labels .* lie in \\[0, 2\\] but the model outputs 2 logits"
    ):
        train(nn.Sequential(nn.Linear(6, 2)), mixture, CFG)
    reg = sd.load("teacher", widths=(6, 8, 2), n_train=32, n_test=8)
    with pytest.raises(DataError, match="targets"):
        train(nn.Linear(6, 3), reg, CFG)
    with pytest.raises(DataError, match="regression"):
        train(nn.Linear(6, 2), reg, TrainConfig(loss="cross_entropy"))


@pytest.mark.parametrize("vectorised", [False, True])
def test_nan_loss_stops_with_the_step(vectorised):
    data = sd.load("teacher", seed=0, widths=(6, 8, 1), n_train=64, n_test=8)
    cfg = TrainConfig(optimizer="sgd", lr=1e4, steps=50, batch_size=16)
    make = lambda s: nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1))  # noqa: E731
    with pytest.raises(TrainingError, match=r"at step \d+ of 50") as info:
        if vectorised:
            train_ensemble(make, 2, data, cfg)
        else:
            train(build_model(make, 0), data, cfg)
    assert "Lower the learning rate" in str(info.value)


def test_bad_resume_arguments(mixture):
    with pytest.raises(TrainingError, match="stop_at"):
        train(build_model(mlp, 0), mixture, CFG, stop_at=10_000)
    with pytest.raises(TrainingError, match="data_seeds"):
        train_stacked([mlp(0), mlp(1)], mixture, CFG, data_seeds=[0])
    with pytest.raises(TrainingError, match="fork step"):
        spawn(mlp(0), mixture, CFG, k=-1)


# -- reproducibility across processes -----------------------------------------------------------
_SCRIPT = """
import hashlib, json
from torch import nn
import symlab.data as sd
from symlab.nn.asymmetric import WAsymLinear
from symlab.train import TrainConfig, train, build_model, train_ensemble

def mlp(s):
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

def asym(s):
    a, b = WAsymLinear(6, 16, 3, seed=s), WAsymLinear(16, 3, 8, seed=s + 1)
    return nn.Sequential(a, nn.ReLU(), b)

def digest(models):
    h = hashlib.sha256()
    for m in models:
        for k, v in m.state_dict().items():
            h.update(k.encode()); h.update(v.detach().numpy().tobytes())
    return h.hexdigest()

data = sd.load("gaussian_mixture", seed=0, dim=6, n_train=96, n_test=32)
cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=32)
single = build_model(mlp, 4)
train(single, data, cfg, data_seed=9)
out = {"single": digest([single])}
for name, make in (("mlp", mlp), ("asym", asym)):
    out[name] = digest(train_ensemble(make, 4, data, cfg).models)
print(json.dumps(out))
"""


def test_training_is_identical_in_a_fresh_process():
    ours: dict[str, str] = {}
    exec(
        compile(_SCRIPT.replace("print(json.dumps(out))", "ours.update(out)"), "<script>", "exec"),
        {"ours": ours},
    )
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    assert theirs == ours and len(set(ours.values())) == 3


@pytest.mark.slow
def test_sixteen_mnist1d_mlps_in_well_under_a_minute():
    data = sd.load("mnist1d")
    make = lambda s: nn.Sequential(  # noqa: E731
        nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    ens = train_ensemble(make, 16, data, TrainConfig(lr=1e-2, schedule="cosine", epochs=30))
    assert ens.method == "fast" and ens.seconds < 60
    assert min(a for a in ens.test_accs if a is not None) > 0.6
