"""Joint (MergeMany) alignment: planted triples are recovered, the objective never decreases."""

from __future__ import annotations

import pytest
import torch

import symlab as sl
from symlab.align import AlignmentError, joint_alignment


def _shuffle(G: sl.SymmetryGroup, seed: int) -> sl.symmetry.GroupElement:
    g = torch.Generator().manual_seed(seed)
    return G.element(
        {
            f.name: torch.randperm(int(f.size), generator=g)
            for f in G.factors
            if f.kind == "permutation"
        }
    )


def _equal(sds: list[dict], atol: float = 0.0) -> bool:
    return all(torch.allclose(sds[0][k], sd[k], atol=atol, rtol=0) for sd in sds for k in sds[0])


@pytest.mark.parametrize("init", ["reference", "identity"])
def test_planted_triple_is_recovered_exactly(init):
    net = sl.nn.MLP([5, 16, 16, 16, 3], seed=0)
    G = sl.symmetries(net)
    sd = net.state_dict()
    triple = [G.act(_shuffle(G, s), sd) for s in (1, 2, 3)]
    assert not _equal(triple)  # negative control: the planted copies differ
    ja = joint_alignment(triple, G, init=init, seed=0)
    assert _equal(ja.apply(triple))
    assert ja.converged
    # cycle consistency: P_j⁻¹ P_i moves model i exactly onto model j
    for i in range(3):
        for j in range(3):
            h = G.compose(G.inverse(ja.alignments[j].element), ja.alignments[i].element)
            moved = G.act(h, triple[i])
            assert all(torch.equal(moved[k], triple[j][k]) for k in sd)


def test_planted_noisy_quadruple_is_recovered():
    net = sl.nn.MLP([5, 24, 24, 3], seed=4)
    G = sl.symmetries(net)
    sd = net.state_dict()
    gen = torch.Generator().manual_seed(0)
    copies = []
    for s in range(4):
        noisy = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in sd.items()}
        copies.append(G.act(_shuffle(G, 10 + s), noisy))
    ja = joint_alignment(copies, G, init="identity", seed=1)
    assert _equal(ja.apply(copies), atol=0.1)
    assert not _equal(copies, atol=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("init", ["reference", "identity"])
def test_objective_never_decreases_and_beats_reference(seed, init):
    models = [sl.nn.MLP([6, 12, 12, 3], seed=10 * seed + m) for m in range(4)]
    G = sl.symmetries(models[0])
    sds = [m.state_dict() for m in models]
    ja = joint_alignment(sds, G, init=init, seed=seed)
    assert ja.rounds >= 2 and sum(ja.changes) > 0  # unrelated models: it really iterates
    assert all(b >= a for a, b in zip(ja.trace, ja.trace[1:], strict=False)), ja.trace
    assert ja.trace[-1] > ja.trace[0]
    ref = joint_alignment(sds, G, init="reference", seed=seed, max_rounds=1)
    if init == "reference":
        assert ja.objective >= ref.trace[0]  # never worse than aligning to model 0
    # the aligned models compute the same functions as the originals
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(0))
    for m, moved in zip(models, ja.apply_models(models), strict=True):
        assert torch.allclose(m(x), moved(x), atol=1e-5)


def test_bad_inputs_are_named_errors():
    net = sl.nn.MLP([3, 4, 2], seed=0)
    G = sl.symmetries(net)
    sd = net.state_dict()
    with pytest.raises(AlignmentError, match="at least two"):
        joint_alignment([sd], G)
    with pytest.raises(AlignmentError, match="init"):
        joint_alignment([sd, sd], G, init="random")  # type: ignore[arg-type]
    with pytest.raises(AlignmentError, match="reference"):
        joint_alignment([sd, sd], G, reference=2)
    ja = joint_alignment([sd, sd], G)
    with pytest.raises(AlignmentError, match="state_dicts for 2"):
        ja.apply([sd])
