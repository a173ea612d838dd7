"""Curved paths (Bézier) and the three-model simplex."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch.nn import functional as F

import symlab as sl
from symlab.connect import BezierCurve, Curve, bezier_curve, bezier_state, simplex, simplex_grid

matplotlib.use("Agg")


def data(n: int = 200, d: int = 10, k: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :k] + 0.3 * torch.randn(n, k, generator=g)).argmax(1)
    return x, y


def trained(seed: int, steps: int = 80, **kw):
    x, y = data()
    net = sl.nn.MLP([10, 16, 16, 4], seed=seed, **kw)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    return net.eval()


def test_bezier_state_formula_and_endpoints():
    a, b = {"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}
    c = {"w": torch.tensor([5.0])}
    assert float(bezier_state(a, b, c, 0.5)["w"]) == 0.25 * 1 + 0.5 * 5 + 0.25 * 3
    assert float(bezier_state(a, b, c, 0.0)["w"]) == 1.0
    assert float(bezier_state(a, b, c, 1.0)["w"]) == 3.0


def test_trained_bezier_curve_beats_the_linear_path():
    a, b = trained(0), trained(1)
    x, y = data()
    linear = sl.connect.interpolate(a, b, (x, y), n_alphas=11)
    curve = bezier_curve(a, b, (x, y), steps=150, lr=2e-2, n_alphas=11, seed=0)
    assert isinstance(curve, BezierCurve) and isinstance(curve, Curve)
    assert torch.allclose(curve.loss[[0, -1]], linear.loss[[0, -1]], atol=1e-5)  # endpoints
    assert float(curve.loss.mean()) < float(linear.loss.mean()) - 0.02
    assert curve.barrier("loss") < linear.barrier("loss")
    assert curve.accuracy is not None and curve.barrier("error") <= linear.barrier("error")
    mid = curve.model_at(0.5)
    with torch.no_grad():
        assert abs(float(F.cross_entropy(mid(x), y)) - float(curve.loss[5])) < 1e-5
    curve.plot()


def test_simplex_grid_and_barriers():
    w = simplex_grid(4)
    assert w.shape == (15, 3) and torch.allclose(w.sum(1), torch.ones(15, dtype=w.dtype))
    a = trained(0)
    x, y = data()
    same = simplex([a, a, a], (x, y), resolution=4)
    assert abs(same.barrier("loss")) < 1e-6 and abs(same.barrier("weighted")) < 1e-6
    b, c = trained(1), trained(2)
    s = simplex([a, b, c], (x, y), resolution=4)
    for i, m in enumerate([a, b, c]):  # vertices are the models' own losses
        with torch.no_grad():
            own = float(F.cross_entropy(m(x), y))
        assert abs(float(s.loss[w[:, i] == 1.0]) - own) < 1e-5
    edge = sl.connect.interpolate(a, b, (x, y), n_alphas=5)  # the a-b edge is the linear path
    on_edge = w[:, 2] == 0
    order = torch.argsort(w[on_edge, 1])
    assert torch.allclose(s.loss[on_edge][order], edge.loss, atol=1e-5)
    assert s.barrier("loss") > 0.05  # unaligned independent models: a bump inside
    assert s.barrier("weighted") >= 0 and s.barrier("error") >= 0
    s.plot()
    # aligning all three together shrinks the barrier over the simplex
    G = sl.symmetries(a)
    merged = sl.connect.merge([a, b, c], G, method="iterative")
    aligned = [al.apply_model(m) for al, m in zip(merged.alignments, [a, b, c], strict=True)]
    assert simplex(aligned, (x, y), resolution=4).barrier("loss") < s.barrier("loss")
    with pytest.raises(ValueError):
        simplex([a, b], (x, y))


def test_simplex_nonfinite_interior_is_an_infinite_barrier():
    s = sl.connect.Simplex(
        simplex_grid(2),
        torch.tensor([1.0, 1.0, 1.0, float("nan"), 1.0, 1.0], dtype=torch.float64),
    )
    assert s.barrier("loss") == float("inf")


def test_bezier_curve_skips_ignored_targets():
    """Targets of -100 (F.cross_entropy's ignore_index) count for nothing in the evaluated
    curve: its ends are the models' own F.cross_entropy; with every target skipped there is
    no loss to average, and that is refused by name."""
    a, b = sl.nn.MLP([10, 8, 4], seed=0), sl.nn.MLP([10, 8, 4], seed=1)
    x, y = data(n=60)
    y[::4] = -100
    curve = bezier_curve(a, b, (x, y), steps=2, n_alphas=3, seed=0)
    with torch.no_grad():
        for i, m in ((0, a), (-1, b)):
            assert curve.loss[i].item() == pytest.approx(F.cross_entropy(m(x), y).item())
    with pytest.raises(sl.errors.DataError, match="no target"):
        bezier_curve(a, b, (x, torch.full_like(y, -100)), steps=2, n_alphas=3, seed=0)
