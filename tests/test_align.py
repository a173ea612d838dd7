"""Alignment: weight matching and activation matching over derived groups."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import symlab as sl
from symlab.align import AlignmentError, activation_matching, solve_assignment, weight_matching
from symlab.errors import DataError, StateDictError


def planted(G: sl.SymmetryGroup, seed: int):
    """A random element that only permutes (the part weight matching can undo)."""
    h = G.sample(seed)
    return G.element({k: h[k] for k in G.permutation_spec()})


def self_match(G: sl.SymmetryGroup, sd: dict) -> float:
    """Σ ‖w‖² over the trainable parameters the permutations move (written independently)."""
    keys = {k for axes in G.permutation_spec().values() for k, _ in axes}
    params = {k for k, (_, spec) in G.graph.state_keys().items() if spec.kind == "param"}
    return float(sum((sd[k].double() ** 2).sum() for k in keys & params))


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class ResCNN(nn.Module):
    """A small residual CNN: a shared residual-stream permutation and a flatten block."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.b1, self.b2 = Block(6), Block(6)
        self.head = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b2(self.b1(torch.relu(self.stem(x)))).flatten(1))


def mlp_cases():
    return [
        sl.nn.MLP([12, 24, 24, 24, 4], seed=0),
        sl.nn.MLP([12, 24, 24, 24, 4], residual=True, norm="layernorm", seed=1),
        sl.nn.MLP([12, 16, 16, 4], norm="batchnorm", activation="tanh", seed=2),
    ]


@pytest.mark.parametrize("net", mlp_cases(), ids=["relu", "residual-ln", "bn-tanh"])
def test_weight_matching_recovers_planted_permutation(net):
    G = sl.symmetries(net)
    sd = net.state_dict()
    h = planted(G, 5)
    sd_b = G.act(h, sd)
    al = weight_matching(sd, sd_b, G, seed=0)
    assert al.objective == pytest.approx(self_match(G, sd), rel=1e-12)
    back = al.apply(sd_b)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    inv = G.inverse(h)
    assert all(torch.equal(al.perms[k], inv[k]) for k in al.perms)
    assert al.trace[0] < al.trace[-1] and al.info["converged"]


def test_weight_matching_traced_residual_cnn():
    net = ResCNN()
    G = sl.symmetries(net, torch.randn(2, 1, 4, 4))
    sd = net.state_dict()
    h = planted(G, 3)
    al = weight_matching(sd, G.act(h, sd), G)
    back = al.apply(G.act(h, sd))
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert al.objective == pytest.approx(self_match(G, sd), rel=1e-12)


def test_objective_agrees_with_group_action_on_independent_models():
    """The indexing inside weight matching and G.act must describe the same alignment."""
    a, b = ResCNN(0), ResCNN(1)
    G = sl.symmetries(a, torch.randn(2, 1, 4, 4))
    al = weight_matching(a.state_dict(), b.state_dict(), G, seed=1)
    moved = al.apply(b.state_dict())
    keys = {k for axes in G.permutation_spec().values() for k, _ in axes}
    params = {k for k, (_, s) in G.graph.state_keys().items() if s.kind == "param"}
    direct = sum(
        float((a.state_dict()[k].double() * moved[k].double()).sum()) for k in keys & params
    )
    assert al.objective == pytest.approx(direct, rel=1e-10)
    assert al.objective > al.trace[0]  # negative control: independent models are not aligned
    assert any(not torch.equal(p, torch.arange(len(p))) for p in al.perms.values())
    assert all(x <= y + 1e-9 for x, y in zip(al.trace, al.trace[1:], strict=False))


def test_weight_matching_is_seeded_and_init_is_a_fixed_point():
    a, b = sl.nn.MLP([8, 32, 32, 32, 3], seed=0), sl.nn.MLP([8, 32, 32, 32, 3], seed=1)
    G = sl.symmetries(a)
    al1 = weight_matching(a.state_dict(), b.state_dict(), G, seed=3)
    al2 = weight_matching(a.state_dict(), b.state_dict(), G, seed=3)
    assert all(torch.equal(al1.perms[k], al2.perms[k]) for k in al1.perms)
    again = weight_matching(a.state_dict(), b.state_dict(), G, seed=7, init=al1)
    assert again.objective >= al1.objective - 1e-9
    capped = weight_matching(a.state_dict(), b.state_dict(), G, max_iter=0)
    assert capped.trace == [capped.objective] and all(
        torch.equal(p, torch.arange(len(p))) for p in capped.perms.values()
    )


def test_bad_inputs():
    a = sl.nn.MLP([8, 16, 3])
    G = sl.symmetries(a)
    other = sl.nn.MLP([8, 17, 3])
    with pytest.raises(StateDictError, match="shape"):
        weight_matching(a.state_dict(), other.state_dict(), G)
    with pytest.raises(StateDictError, match="missing"):
        weight_matching(a.state_dict(), sl.nn.MLP([8, 16, 16, 3]).state_dict(), G)
    G2 = sl.symmetries(sl.nn.MLP([8, 16, 16, 3]))
    with pytest.raises(AlignmentError, match="different symmetry group"):
        weight_matching(a.state_dict(), a.state_dict(), G, init=G2.identity())
    with pytest.raises(AlignmentError, match="not a permutation"):
        weight_matching(
            a.state_dict(), a.state_dict(), G, init={"P[layers.0.linear]": torch.zeros(16)}
        )


def test_solve_assignment_respects_blocks():
    cost = np.zeros((4, 4))
    cost[0, 3] = cost[3, 0] = cost[1, 2] = cost[2, 1] = 10.0  # best across blocks
    cost[0, 1] = cost[1, 0] = 1.0
    assert solve_assignment(cost).tolist() == [3, 2, 1, 0]
    p = solve_assignment(cost, ((0, 1), (2, 3)))
    assert p.tolist() == [1, 0, 2, 3] or p.tolist() == [1, 0, 3, 2]
    assert set(p[:2].tolist()) == {0, 1} and set(p[2:].tolist()) == {2, 3}


@pytest.mark.parametrize("net", mlp_cases()[:2], ids=["relu", "residual-ln"])
def test_activation_and_weight_matching_agree_on_planted(net):
    G = sl.symmetries(net)
    h = planted(G, 11)
    twin = copy.deepcopy(net)
    twin.load_state_dict(G.act(h, net.state_dict()))
    x = torch.randn(400, 12, generator=torch.Generator().manual_seed(0))
    act = activation_matching(net, twin, x, G)
    wm = weight_matching(net.state_dict(), twin.state_dict(), G)
    assert set(act.perms) == set(wm.perms)
    assert all(torch.equal(act.perms[k], wm.perms[k]) for k in wm.perms)
    back = act.apply(twin.state_dict())
    assert all(torch.equal(back[k], net.state_dict()[k]) for k in back)


def test_activation_matching_on_traced_cnn_with_hooks():
    net = ResCNN(2)
    G = sl.symmetries(net, torch.randn(2, 1, 4, 4))
    h = planted(G, 1)
    twin = ResCNN(2)
    twin.load_state_dict(G.act(h, net.state_dict()))
    x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    al = activation_matching(net, twin, (x, torch.zeros(64)), G, batch_size=16)
    inv = G.inverse(h)
    assert all(torch.equal(al.perms[k], inv[k]) for k in al.perms)


def test_activation_matching_data_errors():
    net = sl.nn.MLP([6, 8, 3], activation="tanh")
    G = sl.symmetries(net)
    with pytest.raises(DataError, match="at least 2 samples"):
        activation_matching(net, net, torch.randn(1, 6), G)
    const = torch.ones(10, 6)
    with pytest.raises(DataError, match="constant activation"):
        activation_matching(net, net, const, G, constant="raise")
    al = activation_matching(net, net, const, G)  # ignored: listed, no NaN
    assert al.info["constant"] and np.isfinite(al.objective)
    with pytest.raises(DataError, match="cannot read batches"):
        activation_matching(net, net, 3.0, G)
