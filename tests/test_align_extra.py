"""Alignment beyond plain matching: canonical-scale matching, optimal transport, STE."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import symlab as sl
from symlab.align import (
    Alignment,
    AlignmentError,
    fuse_state_dicts,
    ot_alignment,
    ot_fuse,
    straight_through,
    weight_matching,
)


def data(n: int = 200, d: int = 10, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :k] + 0.3 * torch.randn(n, k, generator=g)).argmax(1)
    return x, y


def trained(seed: int, widths=(10, 16, 16, 4), steps: int = 60, **kw):
    x, y = data()
    net = sl.nn.MLP(list(widths), seed=seed, **kw)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    return net.eval()


def same(a, b, tol=1e-6):
    return all(torch.allclose(a[k].double(), b[k].double(), atol=tol, rtol=tol) for k in a)


# -- canonical scale before matching -----------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"norm": "layernorm"}])
def test_canonical_scale_recovers_a_permutation_hidden_by_scalings(kw):
    net = sl.nn.MLP([6, 16, 16, 16, 3], seed=0, dtype=torch.float64, **kw)
    G = sl.symmetries(net)
    sd = net.state_dict()
    s = G.sample(0, scale_range=10.0)  # permutations composed with random positive scalings
    keep = ("permutation", "scaling", "common_scaling")  # no signs, no translations
    h = G.element({f.name: s[f.name] for f in G.factors if f.kind in keep})
    moved = G.act(h, sd)
    plain = weight_matching(sd, moved, G)
    assert not same(plain.apply(moved), sd)  # the scalings mislead plain weight matching
    al = weight_matching(sd, moved, G, canonical_scale=True)
    assert al.info["canonical_scale"]
    assert same(al.apply(moved), sd, 1e-8)  # back in A's order *and* A's scale gauge
    inv = G.inverse(h)
    assert all(torch.equal(al.perms[k], inv[k]) for k in al.perms)


# -- optimal transport -------------------------------------------------------------------------
def test_ot_plan_rounds_to_a_planted_permutation():
    net = trained(0)
    G = sl.symmetries(net)
    sd = net.state_dict()
    s = G.sample(3)
    h = G.element({k: s[k] for k in G.permutation_spec()})
    moved = G.act(h, sd)
    ta = ot_alignment(sd, moved, G)
    for plan in ta.plans.values():
        n = plan.shape[0]
        assert torch.allclose(plan.sum(0), torch.full((n,), 1.0 / n, dtype=plan.dtype))
        assert int((plan > 1e-12).sum()) == n  # exact OT on distinct units: a permutation
    al = ta.to_alignment()
    assert isinstance(al, Alignment)
    assert same(al.apply(moved), sd)
    assert same(ta.apply(moved), sd)  # the soft map of a vertex plan is the permutation


def test_ot_handles_different_widths_and_fuses_into_the_smaller():
    small, wide = trained(0, (10, 12, 8, 4)), trained(1, (10, 20, 14, 4))
    Gs, Gw = sl.symmetries(small), sl.symmetries(wide)
    ta = ot_alignment(small.state_dict(), wide.state_dict(), Gs, Gw)
    assert {k: tuple(p.shape) for k, p in ta.plans.items()} == {
        "P[layers.0.linear]": (12, 20),
        "P[layers.1.linear]": (8, 14),
    }
    moved = ta.apply(wide.state_dict())
    assert {k: v.shape for k, v in moved.items()} == {
        k: v.shape for k, v in small.state_dict().items()
    }
    fused = ot_fuse(small, wide, Gs, Gw)
    assert fused.state_dict()["layers.0.linear.weight"].shape == (12, 10)
    x, _ = data(seed=5)
    assert torch.isfinite(fused(x)).all()
    # fusing a model with itself (any width) gives itself back
    twin = fuse_state_dicts(
        small.state_dict(),
        small.state_dict(),
        ot_alignment(small.state_dict(), small.state_dict(), Gs),
    )
    assert same(twin, small.state_dict())
    with pytest.raises(AlignmentError):
        ta.to_alignment()


def test_entropic_plans_are_soft_with_the_right_marginals():
    a, b = trained(0), trained(1)
    G = sl.symmetries(a)
    ta = ot_alignment(a.state_dict(), b.state_dict(), G, reg=0.5)
    plan = ta.plans["P[layers.0.linear]"]
    assert int((plan > 1e-6).sum()) > plan.shape[0]
    assert torch.allclose(plan.sum(1), torch.full((16,), 1 / 16, dtype=plan.dtype), atol=1e-6)


# -- straight-through estimator ----------------------------------------------------------------
def test_ste_lowers_the_midpoint_loss_below_weight_matching():
    a, b = trained(0), trained(1)
    G = sl.symmetries(a)
    x, y = data()
    al = straight_through(a, b, (x, y), G, steps=60, lr=1e-2, seed=0)
    assert isinstance(al, Alignment) and al.method == "straight_through"
    start = weight_matching(a.state_dict(), b.state_dict(), G, seed=0)

    def midpoint_loss(alignment: Alignment) -> float:
        mid = sl.connect.interpolate_state(a.state_dict(), alignment.apply(b.state_dict()), 0.5)
        net = sl.nn.MLP([10, 16, 16, 4])
        net.load_state_dict(mid)
        with torch.no_grad():
            return float(F.cross_entropy(net.eval()(x), y))

    assert abs(midpoint_loss(start) - al.info["start_midpoint_loss"]) < 1e-5
    assert abs(midpoint_loss(al) - al.info["midpoint_loss"]) < 1e-5
    assert midpoint_loss(al) < midpoint_loss(start) - 1e-3
