"""E4–E7: each small setting runs (one seed) and its record supports the published claim.

The tolerances are those the small settings support (see each experiment's summary for the
measured margins); the runs with every seed of the small setting are marked slow.
"""

from __future__ import annotations

import pytest
import torch

import experiments
from symlab.runner import run_sweep


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _run(name: str, tmp_path, seeds: int | None = None):
    exp = experiments.get(name)
    out = run_sweep(exp.sweep("small", seeds), tmp_path, workers=1, progress=False)
    assert out.complete, [f["error"] for f in out.failures]
    rep = exp.report(out.records, tmp_path / name, "small")
    assert all(p.exists() for p in rep.files)
    assert {p.suffix for p in rep.files} == {".png", ".pdf", ".md"}
    for r in out.records:  # every job checks that its runs trained and says so
        assert isinstance(r["result"]["trained"], bool) and r["result"]["endpoints"]
    return out.records, rep


def test_registry_has_e4_to_e7():
    assert experiments.names()[3:7] == ["e4", "e5", "e6", "e7"]
    for name in ("e4", "e5", "e6", "e7"):
        exp = experiments.get(name)
        assert exp.settings["full"].runtime and exp.settings["small"].runtime and exp.paper


def test_e4_width(tmp_path):
    from experiments.e4_width import claims

    records, rep = _run("e4", tmp_path, seeds=1)
    cl = claims(records)
    assert cl["alignment_needed"]["held"], cl
    assert cl["weak_falls_with_width"]["held"], cl
    assert cl["strong_falls_with_width"]["held"], cl
    by = {r["config"]["width"]: r["result"]["train"] for r in records}
    for res in by.values():
        # joint alignment cannot beat the best pairwise one on every edge: strong ≥ weak
        assert res["strong"] >= res["weak_mean"] - 1e-6
        assert res["unaligned"] > 0.5
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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["e4", "e5", "e6", "e7"])
def test_small_settings_with_all_seeds(name, tmp_path):
    _, rep = _run(name, tmp_path)
    assert rep.claim_held, rep.summary
