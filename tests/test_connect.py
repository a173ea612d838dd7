"""Linear paths: interpolation, barriers, BatchNorm reset, REPAIR, merging."""

from __future__ import annotations

import copy
import math

import matplotlib
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import symlab as sl
from symlab.align import weight_matching
from symlab.align.activation_matching import unit_activations
from symlab.connect import (
    barrier,
    error_barrier,
    interpolate,
    interpolate_state,
    loss_barrier,
    merge,
    relative_accuracy_drop,
    repair,
    repair_layers,
    weighted_barrier,
)
from symlab.errors import ArchitectureMismatchError, DataError

matplotlib.use("Agg")


def data(n: int = 200, d: int = 10, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :k] + 0.3 * torch.randn(n, k, generator=g)).argmax(1)
    return x, y


def trained(seed: int, steps: int = 60, **kw) -> nn.Module:
    x, y = data()
    net = sl.nn.MLP([10, 32, 32, 4], seed=seed, **kw)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    return net.eval()


# -- barrier definitions on a hand-made curve ------------------------------------------------
ALPHAS = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
LOSS = torch.tensor([1.0, 4.0, 2.0, 2.0, 3.0])
ACC = torch.tensor([0.9, 0.6, 0.7, 0.8, 0.8])


def test_barrier_definitions_by_hand():
    assert loss_barrier(ALPHAS, LOSS) == pytest.approx(4.0 - 2.0)
    # at α=0.25 the chord is 1.5: 4 - 1.5
    assert weighted_barrier(ALPHAS, LOSS) == pytest.approx(2.5)
    assert error_barrier(ALPHAS, ACC) == pytest.approx(0.4 - 0.15)
    assert relative_accuracy_drop(ALPHAS, ACC) == pytest.approx((0.6 - 0.9) / 0.9 * 100)
    curve = sl.connect.Curve(ALPHAS, LOSS, ACC)
    assert curve.barrier("weighted") == weighted_barrier(ALPHAS, LOSS)
    assert barrier("error", ALPHAS, LOSS, ACC) == curve.barrier("error")
    flat = torch.ones(5)
    assert loss_barrier(ALPHAS, flat) == 0.0 and weighted_barrier(ALPHAS, flat) == 0.0


def test_barrier_nonfinite_and_bad_curves():
    bad = LOSS.clone()
    bad[2] = float("nan")
    assert loss_barrier(ALPHAS, bad) == math.inf
    assert weighted_barrier(ALPHAS, bad) == math.inf
    bad[0] = float("inf")
    assert math.isnan(loss_barrier(ALPHAS, bad))
    with pytest.raises(DataError, match="endpoints"):
        loss_barrier(ALPHAS[1:], LOSS[1:])
    with pytest.raises(ValueError, match="unknown barrier"):
        sl.connect.Curve(ALPHAS, LOSS, ACC).barrier("lossy")
    with pytest.raises(DataError, match="needs accuracies"):
        sl.connect.Curve(ALPHAS, LOSS, None).barrier("error")


# -- interpolation ---------------------------------------------------------------------------
def test_endpoints_are_the_models_own_losses_and_vectorised_equals_loop():
    a, b = trained(0), trained(1)
    x, y = data(seed=1)
    curve = interpolate(a, b, (x, y), n_alphas=7)
    with torch.no_grad():
        for model, i in ((a, 0), (b, -1)):
            out = model(x)
            assert curve.loss[i].item() == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-6)
            assert curve.accuracy[i].item() == (out.argmax(1) == y).double().mean().item()
        for i, alpha in enumerate(curve.alphas.tolist()):
            m = copy.deepcopy(a)
            m.load_state_dict(interpolate_state(a.state_dict(), b.state_dict(), alpha))
            ref = F.cross_entropy(m(x), y).item()
            assert curve.loss[i].item() == pytest.approx(ref, rel=1e-5)
            assert F.cross_entropy(curve.model_at(alpha)(x), y).item() == pytest.approx(ref)
    for strategy in ("vmap", "loop"):
        chunked = interpolate(a, b, (x, y), n_alphas=7, chunk=2, batch_size=33, strategy=strategy)
        torch.testing.assert_close(chunked.loss, curve.loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(chunked.accuracy, curve.accuracy)
    assert curve.barrier("loss") > 0  # two independent runs: a real barrier
    ax = curve.plot()
    assert ax.get_xlabel() == "α"


def test_aligned_permuted_copy_has_zero_barrier():
    a = trained(0)
    G = sl.symmetries(a)
    h = G.sample(4)
    h = G.element({k: h[k] for k in G.permutation_spec()})
    b = copy.deepcopy(a)
    b.load_state_dict(G.act(h, a.state_dict()))
    x, y = data(seed=2)
    naive = interpolate(a, b, (x, y), n_alphas=5)
    al = weight_matching(a.state_dict(), b.state_dict(), G)
    aligned = interpolate(a, al.apply_model(b), (x, y), n_alphas=5)
    assert naive.barrier("loss") > 0.05  # negative control: unaligned copies are not connected
    for kind in sl.connect.BARRIERS:
        assert abs(aligned.barrier(kind)) < 1e-5


def test_bn_reset_changes_midpoint_not_endpoints():
    a, b = trained(0, norm="batchnorm"), trained(1, norm="batchnorm")
    x, y = data(seed=3)
    on = interpolate(a, b, (x, y), n_alphas=5, reset_data=data()[0])
    off = interpolate(a, b, (x, y), n_alphas=5, bn_reset=False)
    assert on.bn_reset and not off.bn_reset
    assert on.loss[0] == off.loss[0] and on.loss[-1] == off.loss[-1]
    assert abs(on.loss[2] - off.loss[2]) > 1e-3
    mid = on.model_at(0.5)
    assert F.cross_entropy(mid(x), y).item() == pytest.approx(on.loss[2].item(), rel=1e-5)


def test_architecture_mismatch_names_parameter_and_shapes():
    a, b = sl.nn.MLP([10, 32, 4]), sl.nn.MLP([10, 33, 4])
    with pytest.raises(ArchitectureMismatchError, match=r"layers.0.linear.weight.*\(32, 10\)"):
        interpolate(a, b, data())
    with pytest.raises(ArchitectureMismatchError, match="only in model_b"):
        interpolate(a, sl.nn.MLP([10, 32, 32, 4]), data())


class Divide(nn.Module):
    """y = x / w: the path from w = 1 to w = -1 passes w = 0."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.w


def test_nonfinite_loss_along_path_is_reported_not_raised():
    x, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    curve = interpolate(Divide(1.0), Divide(-1.0), (x, y), n_alphas=5)
    assert curve.nonfinite_alphas.tolist() == [0.5]
    assert curve.barrier("loss") == math.inf
    assert torch.isfinite(curve.loss[[0, 1, 3, 4]]).all()


def test_interpolate_needs_targets_and_rows():
    a = sl.nn.MLP([10, 8, 4])
    with pytest.raises(DataError, match="targets"):
        interpolate(a, a, torch.randn(5, 10))


# -- REPAIR and merging ----------------------------------------------------------------------
def test_repair_matches_interpolated_statistics():
    a, b = trained(0), trained(1)
    G = sl.symmetries(a)
    b = weight_matching(a.state_dict(), b.state_dict(), G).apply_model(b)
    x = data(seed=4)[0]
    mid = copy.deepcopy(a)
    mid.load_state_dict(interpolate_state(a.state_dict(), b.state_dict(), 0.5))
    fixed = repair(mid, [a, b], [0.5, 0.5], x)
    names = repair_layers(a, x)
    assert names == ["layers.0.linear", "layers.1.linear"]

    def stats(m):
        acts = unit_activations(m, names, x)
        return {n: (v.mean(0), v.std(0, unbiased=False)) for n, v in acts.items()}

    sa, sb, sf, sm = stats(a), stats(b), stats(fixed), stats(mid)
    for n in names:
        goal_sd = 0.5 * (sa[n][1] + sb[n][1])
        torch.testing.assert_close(sf[n][0], 0.5 * (sa[n][0] + sb[n][0]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(sf[n][1], goal_sd, atol=1e-4, rtol=1e-4)
        assert (sm[n][1] - goal_sd).abs().max() > 1e-3  # before REPAIR they differ
    curve = interpolate(a, b, data(seed=4), n_alphas=3, repair=True)
    assert curve.loss[1].item() == pytest.approx(F.cross_entropy(fixed(x), data(seed=4)[1]).item())


@pytest.mark.parametrize("method", ["reference", "iterative"])
def test_merging_permuted_copies_returns_the_original_function(method):
    a = trained(0)
    G = sl.symmetries(a)
    copies = [a]
    for s in range(3):
        h = G.sample(s)
        m = copy.deepcopy(a)
        m.load_state_dict(G.act(G.element({k: h[k] for k in G.permutation_spec()}), a.state_dict()))
        copies.append(m)
    x = data(seed=5)[0]
    res = merge(copies[::-1], G, method=method, reference=1)
    with torch.no_grad():
        torch.testing.assert_close(res.model(x), a(x), atol=1e-5, rtol=1e-5)
    assert len(res.alignments) == 4


def test_merge_with_repair_of_independent_models_runs():
    models = [trained(s) for s in range(3)]
    G = sl.symmetries(models[0])
    x, y = data(seed=6)
    plain = merge(models, G, method="iterative")
    fixed = merge(models, G, method="iterative", repair_data=x)
    with torch.no_grad():
        l_plain = F.cross_entropy(plain.model(x), y).item()
        l_fixed = F.cross_entropy(fixed.model(x), y).item()
    assert math.isfinite(l_plain) and math.isfinite(l_fixed)
    assert plain.rounds >= 2
