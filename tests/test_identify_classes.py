"""Function classes, realisation and swap costs (Bürgin et al. 2026), checked against a direct
least-norm solve."""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import symlab as sl
from symlab.identify import function_classes, function_classes_from_weights, support
from symlab.nn import MLP, WAsymLinear


def _lstsq_cost(U, f_i, d_i, target):
    """min ‖w‖² s.t. Uᵀ(f_i + d_i ⊙ w) = target, by numpy least squares (inf if infeasible)."""
    M = U.T * d_i[None, :]
    rhs = target - U.T @ f_i
    w, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    if np.linalg.norm(M @ w - rhs) > 1e-8 * max(1.0, np.linalg.norm(rhs)):
        return math.inf
    return float(w @ w)


def _layer(n=6, d=8, num_fixed=3, kappa=1.0, seed=0):
    layer = WAsymLinear(d, n, num_fixed=num_fixed, kappa=kappa, seed=seed, init_seed=seed)
    x = torch.randn(300, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return layer, x


def test_support_and_coherence():
    base = torch.randn(500, 2, dtype=torch.float64)
    x = torch.cat([base, torch.zeros(500, 6, dtype=torch.float64)], 1)
    s = support(x, 0.9)
    assert s.k <= 2 and s.explained_variance >= 0.9
    assert math.isclose(s.coherence, 1.0, rel_tol=1e-9)  # support sits on two coordinates
    iso = support(torch.randn(4000, 8, dtype=torch.float64), k=8)
    assert math.isclose(iso.coherence, 1.0, rel_tol=1e-9)  # k = d: full space, ν = 1
    spread = support(torch.randn(4000, 8, dtype=torch.float64) @ torch.ones(8, 8).double(), k=1)
    assert math.isclose(spread.coherence, 1 / 8, rel_tol=1e-6)  # the all-ones direction


def test_costs_match_direct_least_norm_solves():
    layer, x = _layer()
    s = support(x, k=5)
    fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
    C = fc.realization_cost()
    U = s.U.numpy()
    D, F = layer.mask.double().numpy(), layer.fixed.double().numpy()
    A = fc.a.numpy()
    for i in range(fc.n):
        for j in range(fc.n):
            ref = _lstsq_cost(U, F[i], D[i], A[j])
            if math.isinf(ref):
                assert math.isinf(C[i, j])
            else:
                assert math.isclose(float(C[i, j]), ref, rel_tol=1e-6, abs_tol=1e-9)


@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), shared=st.booleans())
def test_shared_mask_costs_match_direct_solves_with_any_centres(seed, k, shared):
    """A layer whose units share one mask (standard: all ones; or one common 0/1 row) takes the
    one-quadratic-form path; it must equal the direct least-norm solve, also from other
    centres (the cross-run move cost)."""
    g = torch.Generator().manual_seed(seed)
    n, d = 5, 7
    row = (torch.rand(1, d, generator=g) < 0.7).double() if shared else torch.ones(1, d).double()
    row[0, 0] = 1.0
    mask = row.expand(n, d).clone()
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    s = support(torch.randn(200, d, generator=g, dtype=torch.float64), k=k)
    fc = function_classes_from_weights(w, s, mask)
    targets = torch.randn(4, s.k, generator=g, dtype=torch.float64)
    centres = torch.randn(n, s.k, generator=g, dtype=torch.float64)
    C = fc.cost(targets, centres=centres)
    U, D = s.U.numpy(), mask.numpy()
    for i in range(n):
        for j in range(len(targets)):
            # from centre c_i to t_j: min ‖Δw‖² with Uᵀ(d_i ⊙ Δw) = t_j − c_i
            diff = (targets[j] - centres[i]).numpy()
            ref = _lstsq_cost(U, np.zeros(d), D[i], diff)
            got = float(C[i, j])
            if math.isinf(ref):  # outside the class (a rank-deficient shared Gram)
                assert math.isinf(got), (i, j, got)
            else:
                assert math.isclose(got, ref, rel_tol=1e-6, abs_tol=1e-9), (i, j, got, ref)


def test_negative_control_shared_mask_costs_depend_on_the_centres():
    """The direct-solve comparison above discriminates: the cost from the class centres is not
    the cost from other centres, on the one-quadratic-form path."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64)
    s = support(torch.randn(200, 7, generator=g, dtype=torch.float64), k=4)
    fc = function_classes_from_weights(w, s)
    targets = torch.randn(3, 4, generator=g, dtype=torch.float64)
    centres = torch.randn(5, 4, generator=g, dtype=torch.float64)
    ref = _lstsq_cost(s.U.numpy(), np.zeros(7), np.ones(7), (targets[0] - centres[0]).numpy())
    assert math.isclose(float(fc.cost(targets, centres=centres)[0, 0]), ref, rel_tol=1e-6)
    assert not math.isclose(float(fc.cost(targets)[0, 0]), ref, rel_tol=1e-3)


def test_unreachable_is_inf_not_a_huge_number():
    # a unit with only one trainable input cannot realise a function needing two directions
    w = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    s = support(torch.randn(200, 3, dtype=torch.float64), k=3)
    C = function_classes_from_weights(w, s, mask).realization_cost()
    assert math.isinf(C[0, 1]) and math.isfinite(C[1, 0]) and math.isfinite(C[0, 0])


def test_self_cost_at_most_own_norm_with_equality_in_row_space():
    layer, x = _layer(kappa=0.0)
    s = support(x, k=8)  # the full input space: every trainable weight is in M_i's row space
    fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
    own = ((layer.weight.double() * layer.mask.double()) ** 2).sum(1)
    torch.testing.assert_close(torch.diagonal(fc.realization_cost()), own)
    s3 = support(x, k=3)  # a smaller support: cheaper realisers may exist
    fc3 = function_classes_from_weights(layer.weight, s3, layer.mask, layer.fixed)
    assert (torch.diagonal(fc3.realization_cost()) <= own + 1e-9).all()


def test_swap_costs_zero_for_copies_positive_for_asymmetric_units():
    x = torch.randn(300, 6, dtype=torch.float64)
    w = torch.randn(1, 6, dtype=torch.float64).repeat(4, 1)  # four identical standard units
    T = function_classes_from_weights(w, support(x, k=4)).swap_cost()
    assert T.abs().max() < 1e-9
    layer, x = _layer(n=6, d=8, num_fixed=4, kappa=1.0)
    fc = function_classes_from_weights(layer.weight, support(x, k=6), layer.mask, layer.fixed)
    T = fc.swap_cost()
    off = ~torch.eye(6, dtype=torch.bool)
    assert (T[off] > 0).all()


@given(st.integers(0, 2**16), st.integers(2, 7))
def test_costs_are_equivariant_under_unit_permutation(seed, n):
    layer, x = _layer(n=n, d=6, num_fixed=2, kappa=1.0, seed=seed)
    s = support(x, k=4)
    fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
    p = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fcp = function_classes_from_weights(layer.weight[p], s, layer.mask[p], layer.fixed[p])
    C, Cp = fc.realization_cost(), fcp.realization_cost()
    torch.testing.assert_close(Cp, C[p][:, p])
    torch.testing.assert_close(fcp.swap_cost(), fc.swap_cost()[p][:, p])


def test_function_classes_reads_the_model():
    net = MLP([5, 8, 6, 2], "relu", asym={"num_fixed": 2, "kappa": 1.0}, dtype=torch.float64)
    x = torch.randn(128, 5, dtype=torch.float64)
    fc = function_classes(net, x, "layers.1.linear", k=4)
    assert fc.support.d == 8 and fc.n == 6 and fc.support.k == 4
    try:
        function_classes(net, x, "nope")
    except sl.errors.DataError as e:
        assert "layers.0.linear" in str(e)
    else:
        raise AssertionError("expected DataError")


def test_exact_relu_realizers():
    from symlab.identify.relu_exact import relu_realizers

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    w, b = np.array([1.0, -2.0, 0.5]), 0.3
    r = relu_realizers(X, w, b)
    assert r.max_violation < 1e-7
    y = np.maximum(X @ w + b, 0)
    np.testing.assert_allclose(np.maximum(X @ r.w + r.b, 0), y, atol=1e-6)
    assert r.norm_sq <= r.original_norm_sq + 1e-9
    assert r.dimension == 0  # generic data with > d active points pins the unit down
    # data on a 2-d subspace: the third weight is free, the least-norm realiser sets it to 0
    X2 = np.hstack([X[:, :2], np.zeros((40, 1))])
    r2 = relu_realizers(X2, w, b)
    assert r2.dimension == 1 and abs(r2.w[2]) < 1e-6
    assert r2.norm_sq < r.original_norm_sq
    # a dead unit: every realiser with Xw + b ≤ 0 works; the least-norm one is 0
    r3 = relu_realizers(X, w, -100.0)
    assert r3.n_active == 0 and r3.dimension == 4 and r3.norm_sq < 1e-10


def test_conv_function_classes_use_patches():
    from symlab.nn.asymmetric_conv import WAsymConv2d

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = WAsymConv2d(2, 4, 3, num_fixed=6, kappa=1.0, seed=0, init_seed=0)
            self.std = torch.nn.Conv2d(4, 3, 3)

        def forward(self, x):
            return self.std(torch.relu(self.conv(x)))

    net = Net().double()
    x = torch.randn(8, 2, 7, 7, dtype=torch.float64)
    fc = function_classes(net, x, "conv", k=10)
    assert fc.support.d == 2 * 9 and fc.n == 4
    # realised coefficients are the effective kernels projected on the patch support
    w = net.conv.effective_weight().reshape(4, -1)
    torch.testing.assert_close(fc.a, w @ fc.support.U)
    C = fc.realization_cost()
    U, D, F = (
        fc.support.U.numpy(),
        net.conv.mask.reshape(4, -1).numpy(),
        net.conv.fixed.reshape(4, -1).numpy(),
    )
    ref = _lstsq_cost(U, F[0], D[0], fc.a[1].numpy())
    assert (math.isinf(ref) and math.isinf(C[0, 1])) or math.isclose(
        float(C[0, 1]), ref, rel_tol=1e-6
    )
    std = function_classes(net, x, "std", k=5)
    assert std.support.d == 4 * 9 and std.n == 3
