"""Tests of the hand-written ensemble step (symlab.train.stacked_chain) for Linear/ReLU chains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import symlab.data as sd
from symlab.nn.asymmetric import WAsymLinear
from symlab.train import StackedModels, TrainConfig, build_model, make_optimizer, train
from symlab.train.ensemble import train_ensemble
from symlab.train.stacked_chain import ChainStep
from symlab.train.stacked_linear import stacked_cross_entropy


@pytest.fixture(scope="module")
def mixture() -> sd.Dataset:
    return sd.load("gaussian_mixture", seed=0, num_classes=3, dim=6, n_train=192, n_test=96)


def relu_mlp(seed: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def wide_head(seed: int) -> nn.Module:  # a last layer wider than NARROW, some layers biasless
    return nn.Sequential(
        nn.Linear(6, 16, bias=False), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 40, bias=False)
    )


def asym_mlp(seed: int) -> nn.Module:
    return nn.Sequential(
        WAsymLinear(6, 16, num_fixed=3, kappa=1.0, seed=seed),
        nn.ReLU(),
        WAsymLinear(16, 3, num_fixed=8, kappa=0.5, seed=seed + 1000),
    )


def _stack(factory, n: int = 3, probe: torch.Tensor | None = None) -> StackedModels:
    probe = (
        torch.randn(8, 6, generator=torch.Generator().manual_seed(9)) if probe is None else probe
    )
    return StackedModels([build_model(factory, s) for s in range(n)], probe=probe)


def test_applies_only_to_linear_relu_classifiers():
    probe = torch.randn(8, 6)
    assert ChainStep.build(_stack(relu_mlp), "cross_entropy", probe) is not None
    assert ChainStep.build(_stack(asym_mlp), "cross_entropy", probe) is not None
    tanh = lambda s: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))  # noqa: E731
    relu_first = lambda s: nn.Sequential(nn.ReLU(), nn.Linear(6, 3))  # noqa: E731
    relu_last = lambda s: nn.Sequential(nn.Linear(6, 3), nn.ReLU())  # noqa: E731
    for factory in (tanh, relu_first, relu_last):
        stack = _stack(factory)
        assert stack.method == "fast"  # the autograd fast path still applies
        assert ChainStep.build(stack, "cross_entropy", probe) is None
    assert ChainStep.build(_stack(relu_mlp), "mse", probe) is None
    vmapped = StackedModels([build_model(relu_mlp, s) for s in range(2)], "vmap")
    assert ChainStep.build(vmapped, "cross_entropy", probe) is None


def test_a_forward_that_is_not_the_chain_is_rejected():
    class Scaled(nn.Module):  # leaves form a ReLU chain, the forward does something else
        def __init__(self) -> None:
            super().__init__()
            self.a, self.act, self.b = nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.act(self.a(x))) * 2

    stack = _stack(lambda s: Scaled())
    stack.method = "fast"  # pretend the stack's own check had passed
    assert ChainStep.build(stack, "cross_entropy", torch.randn(8, 6)) is None
    assert all(t.grad is None for t in stack.params.values())  # nothing left behind


@pytest.mark.parametrize("factory", [relu_mlp, wide_head, asym_mlp])
def test_gradients_equal_autograd(factory):
    gen = torch.Generator().manual_seed(3)
    stack = _stack(factory)
    step = ChainStep.build(stack, "cross_entropy", torch.randn(8, 6, generator=gen))
    assert step is not None
    n_out = 40 if factory is wide_head else 3
    x, y = torch.randn(3, 11, 6, generator=gen), torch.randint(0, n_out, (3, 11), generator=gen)
    loss = step.loss_and_grads(x, y)
    got = {k: t.grad.clone() for k, t in stack.params.items()}
    step.release()
    want_loss = stacked_cross_entropy(stack.forward(x), y)
    grads = torch.autograd.grad(want_loss.sum(), list(stack.params.values()))
    assert torch.allclose(loss, want_loss, atol=1e-6)
    for (name, g), w in zip(got.items(), grads, strict=True):
        if name.endswith("weight") and f"{name[:-6]}mask" in stack.buffers:
            w = w * stack.buffers[f"{name[:-6]}mask"]  # fixed entries get no gradient
            assert float(g[stack.buffers[f"{name[:-6]}mask"] == 0].abs().max()) == 0.0
        assert torch.allclose(g, w, atol=1e-6), name
        assert float(g.abs().max()) > 0


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizer_step_equals_torch(optimizer):
    cfg = TrainConfig(optimizer=optimizer, lr=1e-2, weight_decay=1e-2, momentum=0.9)
    gen = torch.Generator().manual_seed(4)
    ours, ref = _stack(relu_mlp), _stack(relu_mlp)
    step = ChainStep.build(ours, "cross_entropy", torch.randn(8, 6))
    assert step is not None
    opt_ours, opt_ref = make_optimizer(cfg, ours.trainable()), make_optimizer(cfg, ref.trainable())
    for _ in range(3):
        grads = [torch.randn(t.shape, generator=gen) for t in ref.trainable()]
        for a, b, g in zip(ours.trainable(), ref.trainable(), grads, strict=True):
            a.grad.copy_(g)
            b.grad = g.clone()
        step.optimizer_step(opt_ours)
        opt_ref.step()
    for a, b in zip(ours.trainable(), ref.trainable(), strict=True):
        assert torch.equal(a, b)  # the same kernel: bit for bit
    for a, b in zip(ours.trainable(), ref.trainable(), strict=True):
        for key, value in opt_ref.state[b].items():
            assert torch.equal(opt_ours.state[a][key], value), key
    step.release()
    assert all(t.grad is None for t in ours.params.values())


@pytest.mark.parametrize("factory", [relu_mlp, wide_head, asym_mlp])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_ensemble_on_the_chain_path_equals_sequential(mixture, factory, optimizer):
    """In float64: Adam divides by √v + ε, which turns float32 rounding of near-zero gradients
    into differences of up to lr per step, so a float32 comparison would depend on luck."""
    y, classes = mixture.y_train, 3
    if factory is wide_head:  # 40 logits: relabel into 40 classes
        y, classes = torch.arange(len(mixture.y_train)) % 40, 40
    data = sd.from_tensors(mixture.x_train.double(), y, num_classes=classes)
    cfg = TrainConfig(optimizer=optimizer, lr=1e-2, momentum=0.9, epochs=2, batch_size=40)

    def factory64(seed: int) -> nn.Module:
        return factory(seed).double()

    ens = train_ensemble(factory64, [0, 1], data, cfg, data_seeds=[5, 6])
    assert ens.method == "fast"
    for seed, dseed, model, res in zip(
        ens.seeds, ens.data_seeds, ens.models, ens.results, strict=True
    ):  # 192 examples in batches of 40: the last batch is smaller
        ref = build_model(factory64, seed)
        ref_res = train(ref, data, cfg, data_seed=dseed)
        for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.allclose(a, b, atol=1e-10), k
        assert torch.allclose(res.step_losses, ref_res.step_losses, atol=1e-10)
    assert not torch.allclose(ens[0].state_dict()["0.weight"], ens[1].state_dict()["0.weight"])
