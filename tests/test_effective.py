"""Effective symmetries (Bürgin et al. 2026): fast costs, effective groups, cross-run
identifiability with gauges removed, effective matching, syre, barriers and endpoint checks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import symlab as sl
from symlab.errors import ArchitectureMismatchError, DataError
from symlab.identify import (
    effective_group,
    effective_group_from_costs,
    function_class_identifiability,
    function_classes_from_weights,
    mask_grams,
    permutation_margins,
    support,
)
from symlab.identify.effective_group import structural_blocks
from symlab.nn import WAsymLinear

F64 = torch.float64


def _x(n=128, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _wasym(kappa=0.0, nf=2, act="relu", widths=(6, 8, 3), seed=0, **kw):
    asym = {"num_fixed": [nf] + [0] * (len(widths) - 2), "kappa": kappa, **kw}
    return sl.nn.MLP(list(widths), act, asym=asym, seed=seed, dtype=F64)


def _permuted_with_masks(net, perm, layer="layers.0.linear", nxt="head"):
    """The same function with the units of ``layer`` re-indexed, masks and fixed parts too."""
    b = copy.deepcopy(net)
    lay, head = b.get_submodule(layer), b.get_submodule(nxt)
    with torch.no_grad():
        for t in (lay.weight, lay.mask, lay.fixed, lay.bias):
            t.copy_(t[perm])
        for t in (head.weight, head.mask, head.fixed):
            t.copy_(t[:, perm])
    return b


# -- costs: the fast paths equal the definitions -------------------------------------------


def _reference_cost(U, F, D, A):
    """min ‖w‖² s.t. Uᵀ(f_i + d_i ⊙ w) = a_j by numpy least squares (inf if infeasible)."""
    n = len(F)
    out = np.empty((n, len(A)))
    for i in range(n):
        M = U.T * D[i][None, :]
        for j in range(len(A)):
            rhs = A[j] - U.T @ F[i]
            w, *_ = np.linalg.lstsq(M, rhs, rcond=None)
            bad = np.linalg.norm(M @ w - rhs) > 1e-7 * max(1.0, np.linalg.norm(rhs))
            out[i, j] = math.inf if bad else float(w @ w)
    return out


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 6), st.sampled_from([0.0, 1.0]))
def test_batched_costs_equal_independent_least_squares(seed, num_fixed, kappa):
    d, n = 7, 6
    layer = WAsymLinear(d, n, num_fixed=num_fixed, kappa=kappa, seed=seed, init_seed=seed)
    s = support(_x(200, d, seed), k=int(seed % d) + 1)
    fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
    U, D, F = s.U.numpy(), layer.mask.double().numpy(), layer.fixed.double().numpy()
    ref = _reference_cost(U, F, D, fc.a.numpy())
    C = fc.realization_cost().numpy()
    assert np.array_equal(np.isinf(C), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(C[fin], ref[fin], rtol=1e-6, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.05, 0.95))
def test_mask_grams_equal_the_direct_product(seed, p):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(12, 5, generator=g, dtype=F64))[0]
    mask = (torch.rand(9, 12, generator=g) < p).double()
    direct = torch.einsum("ak,na,al->nkl", U, mask, U)
    torch.testing.assert_close(mask_grams(U, mask), direct)
    soft = torch.rand(9, 12, generator=g, dtype=F64)  # non-binary masks: the direct form
    torch.testing.assert_close(mask_grams(U, soft), torch.einsum("ak,na,al->nkl", U, soft, U))


def test_gram_support_gives_the_same_costs_as_the_svd():
    layer = WAsymLinear(10, 8, num_fixed=3, kappa=1.0, seed=1, init_seed=1)
    tall, wide = _x(400, 10, 1), _x(12, 10, 1)  # eigh of the Gram (tall) / thin SVD (wide)
    s_tall = support(tall, k=6)
    x = tall - tall.mean(0)
    ref_U = torch.linalg.svd(x, full_matrices=False)[2][:6].T
    torch.testing.assert_close(s_tall.U @ s_tall.U.T, ref_U @ ref_U.T)  # same subspace
    costs = []
    for U in (s_tall.U, ref_U):
        s = sl.identify.Support(U, 0.0, 0.0, torch.ones(6))
        fc = function_classes_from_weights(layer.weight, s, layer.mask, layer.fixed)
        costs.append(fc.realization_cost())
    torch.testing.assert_close(costs[0], costs[1])
    assert support(wide, k=4).k == 4


def test_move_cost_and_realizers_agree_with_the_costs():
    layer = WAsymLinear(8, 6, num_fixed=2, kappa=1.0, seed=3, init_seed=3)
    fc = function_classes_from_weights(layer.weight, support(_x(300, 8, 3), k=5), layer.mask,
                                       layer.fixed)  # fmt: skip
    targets = fc.a[torch.tensor([1, 2, 3, 4, 5, 0])]
    w = fc.realizers(targets)
    assert bool((w[layer.mask == 0] == 0).all())  # masked entries stay untouched
    torch.testing.assert_close(fc.realized(w, layer.fixed), targets)  # realises the targets
    torch.testing.assert_close((w**2).sum(1), torch.diagonal(fc.cost(targets)))  # at least norm
    torch.testing.assert_close(fc.move_cost(fc.v, targets), torch.diagonal(fc.cost(targets)))


# -- margins and the effective group ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 8), st.booleans())
def test_cycle_margins_equal_one_assignment_per_unit(seed, n, identity_optimal):
    rng = np.random.default_rng(seed)
    c = rng.random((n, n))
    if identity_optimal:
        c[np.arange(n), np.arange(n)] = 0.0
    c[rng.random((n, n)) < 0.2] = np.inf
    np.fill_diagonal(c, np.where(identity_optimal, 0.0, rng.random(n)))
    fast, slow = permutation_margins(c), permutation_margins(c, method="lap")
    assert fast.method == "cycles" and slow.method == "lap"
    assert fast.identity_optimal == identity_optimal or not identity_optimal
    np.testing.assert_allclose(fast.margins, slow.margins, atol=1e-9)


def test_zero_cost_cycles_do_not_hang_and_give_zero_margins():
    a = np.random.default_rng(0).random(12)
    c = np.tile(a, (12, 1))  # a standard layer: every unit realises j at cost ‖a_j‖²
    m = permutation_margins(c)
    assert m.method == "cycles" and np.abs(m.margins).max() < 1e-9


def test_standard_layer_effective_group_is_its_structural_group():
    net = sl.nn.MLP([5, 8, 2], seed=0)
    eg = effective_group(net, torch.randn(64, 5), "layers.0.linear")
    assert eg.log10_order == eg.exact_log10_order == eg.structural_log10_order
    assert math.isclose(eg.log10_order, math.log10(math.factorial(8)))
    assert not bool(eg.identifiable.any()) and eg.contains_structural()


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([0.0, 1.0]), st.integers(0, 1))
def test_effective_group_contains_the_structural_permutations(seed, kappa, nf):
    # few inputs, few fixed: several units share a mask row, a structural block each
    net = _wasym(kappa=kappa, nf=nf, widths=(3, 10, 2), seed=seed)
    G = sl.symmetries(net)
    eg = effective_group(net, _x(64, 3, seed), "layers.0.linear", G, rel_eps=0.0)
    assert eg.contains_structural()
    assert eg.exact_log10_order >= eg.structural_log10_order - 1e-12
    h = G.sample(seed)
    for f in G.factors:
        if f.kind == "permutation" and f.space == "layers.0.linear":
            assert eg.contains(h[f.name], exact=True)


def test_effective_group_from_costs_negative_control():
    C = torch.tensor([[1.0, 5.0], [5.0, 1.0]])
    eg = effective_group_from_costs(C, eps=0.1)
    assert eg.classes == ((0,), (1,)) and bool(eg.identifiable.all())
    assert not eg.contains(torch.tensor([1, 0]))


# -- cross-run identifiability with the gauges removed --------------------------------------


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["relu", "tanh"]))
def test_permuted_rescaled_flipped_copy_scores_one_and_is_recovered(seed, act):
    """D7: C^{AB} of a permuted (masks too), rescaled or sign-flipped copy recovers the
    permutation and scores 1 once it is undone; the gauges alone score 1 at the identity."""
    a = _wasym(kappa=0.0, nf=3, act=act, widths=(6, 8, 3), seed=seed)
    G = sl.symmetries(a)
    h = G.sample(seed, scale_range=10.0)
    h = G.element({f.name: h[f.name] for f in G.factors if f.kind != "permutation"})
    gauged = copy.deepcopy(a)
    gauged.load_state_dict(G.act(h, a.state_dict()))
    x = _x(256, 6, seed)
    lay = function_class_identifiability(a, gauged, x, G, explained_variance=1.0)
    lay = lay["layers.0.linear"]
    singles = [blk[0] for blk in structural_blocks(G, "layers.0.linear", 8) if len(blk) == 1]
    assert lay.score == 1.0 and all(int(lay.permutation[i]) == i for i in singles)
    p = torch.randperm(8, generator=torch.Generator().manual_seed(seed))
    b = _permuted_with_masks(gauged, p)
    got = function_class_identifiability(a, b, x, G, explained_variance=1.0)["layers.0.linear"]
    inv = torch.argsort(p)
    assert singles and all(int(got.permutation[i]) == int(inv[i]) for i in singles)
    undone = _permuted_with_masks(b, got.permutation)
    again = function_class_identifiability(a, undone, x, G, explained_variance=1.0)
    assert again["layers.0.linear"].score == 1.0
    gauges = [f for f in G.factors if f.kind in ("scaling", "sign")]
    if any(bool((h[f.name] != 1).any()) for f in gauges):
        assert lay.gauge_distortion > 0  # the gauge mismatch is seen (it bends the path)


def test_rescaled_copy_is_identifiable_but_predicted_to_have_a_barrier():
    """The issue's case: B = D·A with scales in [1/10, 10]; correlation calls it mergeable."""
    torch.manual_seed(0)
    data = sl.data.load("coherence", seed=0, copies=2, n_train=256, n_test=256)
    a = sl.nn.MLP([20, 32, 1], "relu", asym={"num_fixed": [4, 0], "kappa": 0.0}, seed=0)
    sl.train.train(a, data, sl.train.TrainConfig(optimizer="adamw", lr=1e-2, epochs=30,
                                                 batch_size=64, progress=False))  # fmt: skip
    G = sl.symmetries(a)
    scales = torch.exp(torch.empty(32).uniform_(math.log(0.1), math.log(10.0)))
    b = copy.deepcopy(a)
    b.load_state_dict(G.act(G.element({"scale[layers.0.linear]": scales}), a.state_dict()))
    rep = sl.identify.identifiability(a, b, data, G)
    fc = rep.layers["layers.0.linear"].function_class
    assert fc.score == 1.0 and fc.gauge_distortion > 0.1
    assert torch.equal(fc.permutation, torch.arange(32))
    check = sl.identify.test_prediction(a, b, data, report=rep, tolerance=0.02)
    assert check.trained and not check.prediction.low_loss and not check.low_loss_measured
    assert check.barrier > 50 * float(check.curve.loss[0])  # a real barrier over the endpoints
    assert "gauge" in check.prediction.reason
    corr = sl.identify.predict_alignment_free(rep, rule="correlation")
    assert corr.low_loss  # negative control: the correlation measure is blind to the scales


# -- effective matching ------------------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["standard", "k0", "k1", "syre"]))
def test_effective_matching_of_a_model_with_itself_is_the_identity(seed, variant):
    widths = [6, 8, 8, 3]
    asym = {"standard": None, "k0": {"num_fixed": 2, "kappa": 0.0},
            "k1": {"num_fixed": 2, "kappa": 1.0},
            "syre": {"num_fixed": 0, "kappa": 0.0, "syre": 0.5}}[variant]  # fmt: skip
    a = sl.nn.MLP(widths, "relu", asym=asym, seed=seed, dtype=F64)
    eff = sl.align.effective_matching(a, a, _x(96, 6, seed))
    assert eff.residual == 0.0
    assert all(bool((v.permutation == torch.arange(len(v.permutation))).all())
               for v in eff.layers.values())  # fmt: skip
    assert all(torch.equal(eff.state_dict[k], v) for k, v in a.state_dict().items())


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([None, 1.0 - 1e-8, 0.9]))
def test_effective_matching_reports_its_residual_honestly(seed, ev):
    a = _wasym(kappa=0.0, nf=2, widths=(6, 10, 3), seed=seed)
    b = _wasym(kappa=0.0, nf=2, widths=(6, 10, 3), seed=seed + 1)
    x = _x(128, 6, seed)
    kw = {} if ev is None else {"explained_variance": ev}
    eff = sl.align.effective_matching(a, b, x, **kw)
    moved = eff.apply_model(b)
    with torch.no_grad():
        yb, ym = b(x), moved(x)
    change = float((ym - yb).norm() / (yb - yb.mean(0)).norm())
    assert change <= eff.residual + 1e-9
    if ev is None:  # the default support is the data's span: the function is kept
        assert eff.residual < 1e-8


def test_re_realisation_fits_on_the_data_and_equals_the_realizers_where_reachable():
    """Effective matching's re-realisation: where a slot's class holds the target on the data's
    span it equals the least-norm realiser; where it does not (a relaxed support moved a
    function across masks), it fits better on the data than the unweighted projection of the
    support coefficients (negative control: the realiser's residual is larger)."""
    from symlab.identify.effective_matching import fit_rows

    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([5, 3, 1, 0.3, 0.1, 0.03], dtype=F64)
    x = torch.randn(500, 6, generator=g, dtype=F64) @ (torch.randn(6, 6, generator=g, dtype=F64)
                                                      * scales)  # fmt: skip
    mask = (torch.rand(4, 6, generator=g) > 0.4).double()
    w = torch.randn(4, 6, generator=g, dtype=F64)
    s = support(x, k=6)
    fc = function_classes_from_weights(torch.zeros(4, 6, dtype=F64), s, mask, None)
    rows = torch.ones(4, dtype=torch.bool)
    reachable = mask * w
    fit = fit_rows(x, x @ reachable.T, mask, None, rows)
    torch.testing.assert_close(fit, reachable)
    torch.testing.assert_close(fit, fc.realizers(reachable @ s.U))
    target = x @ w.T  # dense functions: outside every masked slot's class
    fit, proj = fit_rows(x, target, mask, None, rows), fc.realizers(w @ s.U)
    assert bool((fit[mask == 0] == 0).all())
    xc, tc = x - x.mean(0), target - target.mean(0)
    err = lambda v: ((xc @ (mask * v).T - tc) ** 2).sum(0)  # noqa: E731
    assert bool((err(fit) <= err(proj) * (1 + 1e-9)).all()) and float(err(fit).sum()) < 0.8 * float(
        err(proj).sum()
    )
    only = torch.tensor([True, False, True, False])
    assert bool((fit_rows(x, target, mask, None, only)[~only] == 0).all())  # other rows untouched


def test_effective_matching_moves_functions_across_masks_to_a_fixed_point():
    """On a spread 2-dim support every masked unit can realise every other's function: the
    units move across masks, B's function is kept, the distance to A drops, and matching the
    result again moves nothing."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 2, generator=g, dtype=F64) @ torch.randn(2, 8, generator=g, dtype=F64)
    a = _wasym(kappa=0.0, nf=4, widths=(8, 12, 2), seed=5)
    b = _wasym(kappa=0.0, nf=4, widths=(8, 12, 2), seed=6)
    assert sl.symmetries(a).log10_order < 1  # no structural permutation to speak of
    eff = sl.align.effective_matching(a, b, x, gauges=False)
    lay = eff.layers["layers.0.linear"]
    assert lay.moved > 0 and lay.realised > 0 and lay.unreachable == 0
    assert lay.cost < lay.identity_cost and eff.residual < 1e-8
    again = sl.align.effective_matching(a, eff.apply_model(b), x, gauges=False)
    assert again.layers["layers.0.linear"].moved == 0


def test_a_re_masked_copy_is_moved_back_into_a_s_slots():
    """B: A's units re-indexed together with their masks (the same function, another mask
    layout). Effective matching expresses B in A's architecture, which gives A back."""
    a = _wasym(kappa=0.0, nf=2, widths=(6, 8, 3), seed=7)
    b = _permuted_with_masks(a, torch.tensor([3, 1, 0, 7, 2, 6, 4, 5]))
    x = _x(128, 6, 7)
    eff = sl.align.effective_matching(a, b, x)
    assert eff.layers["layers.0.linear"].moved > 0 and eff.residual < 1e-8
    for k, v in a.state_dict().items():
        torch.testing.assert_close(eff.state_dict[k], v, atol=1e-7, rtol=1e-6)


def test_effective_alignment_beats_structural_on_the_masked_sandbox():
    """The gap that is the paper's thesis: masked runs at low coherence are connected after
    effective alignment; structural alignment cannot move their units."""
    from experiments.e3_identifiability import SandboxNet

    data = sl.data.load("coherence", seed=0, copies=10)
    cfg = sl.train.TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=1e-2, epochs=30,
                               batch_size=128, progress=False)  # fmt: skip
    runs = []
    for seed in (0, 1):
        m = SandboxNet(20, 48, 0.15, 0, seed)
        sl.train.train(m, data, cfg, data_seed=seed)
        runs.append(m.eval())
    a, b = runs
    G = sl.symmetries(a, data.x_train[:2])
    none = sl.connect.interpolate(a, b, data, 11).barrier("max_endpoint")
    eff = sl.align.effective_matching(a, b, data, G)
    effective = sl.connect.interpolate(a, eff.apply_model(b), data, 11).barrier("max_endpoint")
    assert G.log10_order < 1  # structurally (almost) nothing to align
    assert eff.residual < 1e-5 and effective < 0.25 * none, (none, effective)


# -- syre: derived group and its proof ---------------------------------------------------------


def test_syre_group_is_trivial_and_proven():
    net = sl.nn.MLP([5, 6, 6, 3], "relu", asym={"num_fixed": 0, "kappa": 0.0, "syre": 1.0},
                    dtype=F64)  # fmt: skip
    G = sl.symmetries(net)
    assert G.log10_order == 0 and G.dimension == 0
    assert sl.check_invariance(net, G, _x(32, 5), samples=4).passed
    layer = WAsymLinear.syre_layer(5, 6, kappa=1.0, seed=0)
    assert bool(layer.mask.all()) and bool((layer.fixed != 0).all())
    traced = torch.nn.Sequential(layer, torch.nn.ReLU(), torch.nn.Linear(6, 2))
    assert sl.symmetries(traced, torch.randn(2, 5)).log10_order == 0


def test_syre_negative_control_ignoring_the_offset_is_unsound():
    net = sl.nn.MLP([5, 6, 3], "relu", asym={"num_fixed": 0, "kappa": 0.0, "syre": 1.0},
                    dtype=F64)  # fmt: skip
    g = sl.trace(net)
    for node in g.nodes():
        node.attrs.pop("syre", None)  # what the rule would see without the syre attribute
    G = sl.symmetries(g)
    assert G.log10_order > 0  # permutations and GL maps claimed...
    rep = sl.check_invariance(net, G, _x(32, 5), samples=4, raise_on_failure=False)
    assert not rep.passed  # ...and refuted on the real model


def test_edited_buffers_are_read_not_the_constructor_arguments():
    """Fail closed: a layer built with κ = 0 whose fixed part was filled afterwards (E3's
    sandbox read-out) admits no scaling."""
    from experiments.e3_identifiability import SandboxNet

    net = SandboxNet(20, 12, 0.15, 0, 0).double()
    G = sl.symmetries(net, torch.randn(2, 20, dtype=F64))
    assert G.dimension == 0
    assert sl.check_invariance(net, G, _x(16, 20), samples=4).passed


# -- barriers, endpoints, bad input ------------------------------------------------------------


def test_max_endpoint_barrier_and_endpoint_checks():
    al = torch.linspace(0, 1, 5)
    loss = torch.tensor([0.05, 0.9, 0.6, 0.4, 0.5])
    assert sl.connect.barrier("max_endpoint", al, loss) == pytest.approx(0.4)
    assert sl.connect.max_endpoint_barrier(al, loss) <= sl.connect.loss_barrier(al, loss)
    ok = sl.connect.check_endpoints(al, loss, target_variance=10.0)
    bad = sl.connect.check_endpoints(al, loss, target_variance=1.0)
    assert ok.trained and not bad.trained and bad.endpoints == (True, False)
    assert "R²" in bad.reason and "0.9" in bad.reason
    acc = torch.tensor([0.8, 0.5, 0.4, 0.3, 0.2])
    c = sl.connect.check_endpoints(al, loss, acc, num_classes=2)
    assert c.endpoints == (True, False) and c.threshold == pytest.approx(0.65)
    with pytest.raises(DataError, match="num_classes"):
        sl.connect.check_endpoints(al, loss, acc)
    with pytest.raises(DataError, match="targets"):
        sl.connect.check_endpoints(al, loss)


def test_wrong_width_data_gets_a_named_error_everywhere():
    a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    x = torch.randn(16, 3)
    calls = [
        lambda: sl.identify.identifiability(a, b, x),
        lambda: sl.identify.identifiability(a, b, (x, torch.zeros(16, dtype=torch.long))),
        lambda: sl.align.effective_matching(a, b, x),
        lambda: sl.identify.function_class_identifiability(a, b, x),
        lambda: effective_group(a, x, "layers.0.linear"),
        lambda: sl.identify.function_classes(a, x, "layers.0.linear"),
    ]
    for call in calls:
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert "(3,)" in msg and "4 features" in msg and "input width" in msg
    with pytest.raises(ArchitectureMismatchError):
        sl.identify.identifiability(a, sl.nn.MLP([4, 9, 2]), torch.randn(16, 4))
    with pytest.raises(DataError, match="identifiability"):
        sl.identify.identifiability(a, b, [1, 2, 3])
    with pytest.raises(ArchitectureMismatchError):
        sl.align.effective_matching(a, sl.nn.MLP([4, 9, 2]), torch.randn(16, 4))


def test_mismatched_runs_groups_and_shapes_get_named_errors():
    """Runs of another width, depth or layer type, a group derived from another model, and
    coefficient arrays of the wrong shape: each a named SymlabError, never a torch traceback."""
    from symlab.errors import SymlabError

    a = sl.nn.MLP([4, 8, 2], seed=0)
    masked = sl.nn.MLP([4, 8, 2], asym={"num_fixed": 2, "kappa": 1.0}, seed=0)
    other_width, deeper = sl.nn.MLP([4, 9, 2], seed=1), sl.nn.MLP([4, 8, 8, 2], seed=1)
    x = torch.randn(32, 4)
    G_other = sl.symmetries(other_width)
    fc = sl.identify.function_classes(a, x, "layers.0.linear")
    mismatched_runs = [
        lambda b: sl.identify.function_class_identifiability(a, b, x),
        lambda b: sl.identify.identifiability(a, b, x),
        lambda b: sl.align.effective_matching(a, b, x),
    ]
    for call in mismatched_runs:
        for b in (other_width, deeper, masked):
            with pytest.raises(ArchitectureMismatchError):
                call(b)
    foreign_group = [
        lambda: sl.identify.function_class_identifiability(a, a, x, G_other),
        lambda: sl.identify.identifiability(a, a, x, G_other),
        lambda: sl.align.effective_matching(a, a, x, G_other),
        lambda: effective_group(a, x, "layers.0.linear", G_other),
    ]
    for call in foreign_group:
        with pytest.raises(ArchitectureMismatchError, match="G was not derived"):
            call()
    k = fc.v.shape[1]
    wrong_shapes = [
        lambda: fc.move_cost(torch.randn(3, k), torch.randn(3, k)),
        lambda: fc.realized(torch.randn(3, 4)),
        lambda: fc.realizers(torch.randn(3, k)),
        lambda: fc.cost(torch.randn(3, k + 1)),
        lambda: sl.identify.support_coefficients(x, torch.randn(31, 8), fc.support),
        lambda: effective_group(a, x, "layers.0.linear",
                                classes=sl.identify.function_classes(other_width, x,
                                                                     "layers.0.linear")),
        lambda: sl.identify.predict_alignment_free(None),
    ]  # fmt: skip
    for call in wrong_shapes:
        with pytest.raises(DataError):
            call()
    with pytest.raises(SymlabError, match="rule must be one of"):
        sl.identify.predict_alignment_free(sl.identify.identifiability(a, a, x), rule="nope")
    # negative control: the matching inputs pass every check
    G = sl.symmetries(a)
    assert sl.identify.function_class_identifiability(a, a, x, G)["layers.0.linear"].score == 1.0
    assert effective_group(a, x, "layers.0.linear", G, classes=fc).n == 8
    assert fc.move_cost(fc.a, fc.a).abs().max() < 1e-12


def test_max_distance_adds_the_derivations_condition():
    """``max_distance`` (off by default) also asks that the runs' slots hold nearby functions;
    a report whose layer is far apart flips the verdict only when it is set."""
    import dataclasses

    a = sl.nn.MLP([4, 8, 2], asym={"num_fixed": 2, "kappa": 1.0}, seed=0)
    rep = sl.identify.identifiability(a, a, torch.randn(64, 4))
    same = sl.identify.predict_alignment_free(rep, max_distance=0.5)
    assert same.low_loss and same.layers["layers.0.linear"]["distance"] < 1e-12
    far = dataclasses.replace(rep, layers={
        k: dataclasses.replace(v, function_class=dataclasses.replace(
            v.function_class, distance=0.7, shared_consumer=False))
        for k, v in rep.layers.items()})  # fmt: skip
    assert sl.identify.predict_alignment_free(far).low_loss  # off by default
    flipped = sl.identify.predict_alignment_free(far, max_distance=0.5)
    assert not flipped.low_loss and "ρ = 0.70 > 0.5" in flipped.reason
