"""Identifiability scores and the alignment-free prediction (Bürgin et al. 2026)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import symlab as sl
from symlab.identify import identifiability, pairwise_identifiability, predict_alignment_free
from symlab.identify import test_prediction as check_prediction


@pytest.fixture(scope="module")
def sandbox_runs():
    """Two runs each of a standard and a W-asymmetric ReLU layer on the coherence sandbox."""
    torch.set_num_threads(1)
    data = sl.data.load("coherence", seed=0)
    cfg = sl.train.TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=1e-2, epochs=40,
                               batch_size=64)  # fmt: skip
    runs = {}
    for name, asym in (("standard", None), ("asym", {"num_fixed": [16, 0], "kappa": 2.0})):
        models = []
        for seed in (1, 2):
            m = sl.nn.MLP([20, 64, 1], "relu", asym=asym, seed=seed)
            sl.train.train(m, data, cfg, data_seed=seed)
            models.append(m)
        runs[name] = models
    return data, runs


def test_standard_runs_are_not_identifiable_asymmetric_runs_are(sandbox_runs):
    data, runs = sandbox_runs
    std = identifiability(*runs["standard"], data)
    asym = identifiability(*runs["asym"], data)
    assert std.score < 0.2, str(std)
    assert asym.score > 0.85, str(asym)
    layer = asym.layers["layers.0.linear"]
    assert layer.random < layer.identity <= layer.optimal + 1e-12
    assert layer.self_match_fraction > std.layers["layers.0.linear"].self_match_fraction


def test_prediction_agrees_with_the_measured_barrier(sandbox_runs):
    data, runs = sandbox_runs
    for name, low in (("standard", False), ("asym", True)):
        chk = check_prediction(*runs[name], data, tolerance=0.05)
        assert chk.prediction.low_loss is low, str(chk)
        assert chk.agree, str(chk)
        assert "function_class score" in chk.prediction.reason, chk.prediction.reason


def test_pairwise_matrix(sandbox_runs):
    data, runs = sandbox_runs
    mats = pairwise_identifiability([*runs["asym"], runs["asym"][0]], data)
    m = mats["layers.0.linear"]
    assert m.shape == (3, 3) and (m.diagonal() == 1).all() and (m == m.T).all()
    assert m[0, 2] == 1.0 and m[0, 1] < 1.0  # a run against itself vs an independent run


def _x(seed=0):
    return torch.randn(256, 5, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16))
def test_a_permuted_copy_is_found_and_scores_by_its_permutation(seed):
    """ReLU: permutations and positive scalings leave unit correlations at 1."""
    a = sl.nn.MLP([5, 12, 3], "relu", seed=seed)
    G = sl.symmetries(a)
    h = G.sample(seed)
    b = sl.nn.MLP([5, 12, 3], "relu", seed=seed)
    b.load_state_dict(G.act(h, a.state_dict()))
    rep = identifiability(a, b, _x(seed), G)
    layer = rep.layers["layers.0.linear"]
    inv = torch.argsort(h["P[layers.0.linear]"])
    assert abs(layer.optimal - 1.0) < 1e-6  # every unit found its copy (correlation 1)
    assert (layer.permutation == inv).float().mean() > 0.9  # up to units dead on this data
    moved = int((inv != torch.arange(12)).sum())
    assert (layer.identity < 0.999) == (moved > 1)
    assert identifiability(a, a, _x(seed), G).score == 1.0


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**16))
def test_score_is_invariant_when_both_runs_move_together(seed):
    a = sl.nn.MLP([5, 10, 3], "relu", seed=seed)
    b = sl.nn.MLP([5, 10, 3], "relu", seed=seed + 1)
    G = sl.symmetries(a)
    h = G.sample(seed)
    a2, b2 = sl.nn.MLP([5, 10, 3], "relu"), sl.nn.MLP([5, 10, 3], "relu")
    a2.load_state_dict(G.act(h, a.state_dict()))
    b2.load_state_dict(G.act(h, b.state_dict()))
    r1, r2 = identifiability(a, b, _x(seed), G), identifiability(a2, b2, _x(seed), G)
    for k in r1.layers:
        assert abs(r1.layers[k].score - r2.layers[k].score) < 1e-6
        assert abs(r1.layers[k].optimal - r2.layers[k].optimal) < 1e-6


def test_prediction_reason_names_the_layer():
    a, b = sl.nn.MLP([5, 8, 8, 2], seed=0), sl.nn.MLP([5, 8, 8, 2], seed=1)
    pred = predict_alignment_free(identifiability(a, b, _x()))
    assert not pred.low_loss and pred.not_identifiable
    assert pred.not_identifiable[0] in pred.reason
