"""E4–E7: each small setting runs (one seed) and its record supports the published claim.

The tolerances are those the small settings support (see each experiment's summary for the
measured margins); the runs with every seed of the small setting are marked slow.
"""

from __future__ import annotations

import pytest
import torch
from experiment_check import run_small as _run

import experiments


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_registry_has_e4_to_e9():
    assert experiments.names()[3:7] == ["e4", "e5", "e6", "e7"] and "e9" in experiments.names()
    for name in ("e4", "e5", "e6", "e7", "e9"):
        exp = experiments.get(name)
        assert exp.settings["full"].runtime and exp.settings["small"].runtime and exp.paper


def test_e4_width(tmp_path):
    from experiments.e4_width import claims

    records, rep = _run("e4", tmp_path, seeds=1)
    cl = claims(records)
    assert cl["alignment_needed"]["held"], cl
    assert cl["weak_falls_with_width"]["held"], cl
    assert cl["strong_falls_with_width"]["held"], cl
    assert "joint_beats_reference" in cl  # an observation, reported either way
    for r in records:
        res, al = r["result"]["train"], r["result"]["alignment"]
        # one permutation per model cannot beat the best pairwise one on every edge
        assert res["strong_joint"] >= res["weak_mean"] - 1e-6
        assert res["unaligned"] > 0.5
        # joint alignment starts from the reference one and never lowers its objective
        assert al["objective_joint"] >= al["objective_reference"]
    assert "| 512 |" in rep.table and "Sharma" in (tmp_path / "e4" / "e4_small.md").read_text()


def test_e5_spawning(tmp_path):
    from experiments.e5_spawning import STABLE, claims, stability_point

    records, rep = _run("e5", tmp_path, seeds=1)
    cl = claims(records)
    assert cl["unstable_at_init"]["held"], cl
    assert cl["stable_later"]["held"], cl
    by = {r["config"]["k"]: r["result"] for r in records}
    assert by[0]["error_barrier"] > 2 * STABLE
    assert by[max(by)]["error_barrier"] < STABLE
    point = stability_point(records)
    assert point is not None and 0 < point <= by[0]["total_steps"] // 2
    assert rep.claim_held


def test_e6_repair(tmp_path):
    from experiments.e6_repair import claims

    records, rep = _run("e6", tmp_path, seeds=1)
    cl = claims(records)
    assert cl["repair_reduces_barrier"]["held"], cl
    assert cl["variance_collapse"]["held"], cl
    assert cl["gain_grows_with_depth"]["held"], cl
    for r in records:  # REPAIR restores the last hidden layer's spread
        assert abs(r["result"]["repair_std_ratio"] - 1.0) < 0.02
    assert rep.claim_held


def test_e7_curves(tmp_path):
    from experiments.e7_curves import claims

    records, _ = _run("e7", tmp_path, seeds=1)
    cl = claims(records)
    assert cl["curve_beats_line"]["held"], cl
    assert cl["alignment_lowers_line"]["held"], cl
    assert cl["alignment_helps_curves"]["held"], cl
    p = records[0]["result"]["paths"]
    assert p["none"]["linear_train"] > 0.5 and p["none"]["bezier400_train"] < 0.25
    assert "Garipov" in (tmp_path / "e7" / "e7_small.md").read_text()


def test_e9_sequences(tmp_path):
    from experiments.e9_sequences import claims

    records, _ = _run("e9", tmp_path, seeds=1)
    cl = claims(records)
    assert cl["one_perm_aligns_training"]["held"], cl
    assert cl["one_perm_matches_per_step"]["held"], cl
    assert cl["dense_perm_aligns_pruning"]["held"], cl
    assert "one_perm_aligns_pruning" in cl  # reported either way
    res = records[0]["result"]
    assert res["sparsity"][0] == 0.0 and res["sparsity"][-1] > 0.9
    last = res["training"][-1]  # at the end, the one permutation is the per-step one
    assert last["final"] == last["per_step"] and last["none"]["train"] > 0.5
    assert "Sharma" in (tmp_path / "e9" / "e9_small.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["e4", "e5", "e6", "e7", "e9"])
def test_small_settings_with_all_seeds(name, tmp_path):
    _, rep = _run(name, tmp_path)
    assert rep.claim_held, rep.summary
