"""Every zoo model: derived group proven on the real model; ResNet-20's spec against a
hand-written git-re-basin-style spec."""

import pytest
import torch

import symlab as sl
from symlab.nn.zoo import registry
from symlab.symmetry.spec_io import diff


def _tiny(name):
    kw = registry.tiny(name)
    model = registry.get(name, **kw).double()
    x = registry.example_input(name, batch=4, **kw)
    if x.is_floating_point():
        x = x.double()
    model.train()
    with torch.no_grad():
        model(x)  # BatchNorm statistics that are not the identity
    return model.eval(), x


@pytest.mark.parametrize("name", registry.names())
def test_every_zoo_model_is_sound(name):
    model, x = _tiny(name)
    G = sl.symmetries(model, x)
    rep = sl.check_invariance(model, G, x, samples=4)
    assert rep.passed, rep


def test_asymmetric_zoo_models_lose_their_permutations():
    for name in ("wasym_resnet20", "figlu_resnet20", "wasym_mlp"):
        model, x = _tiny(name)
        assert not sl.symmetries(model, x).permutation_spec(), name


def _resnet20_spec(blocks=3):
    """git-re-basin's ResNet spec written by hand: one permutation per stage's residual stream
    (stem or shortcut conv, every block's second conv and norm, the next stage's readers),
    one per block for its inner channels."""

    def norm(name, p):
        return {p: [(f"{name}.{k}", 0) for k in ("weight", "bias", "running_mean", "running_var")]}

    spec: dict[str, list] = {}

    def add(p, axes):
        spec.setdefault(p, []).extend(axes)

    add("P_bg0", [("conv1.weight", 0)])
    add("P_bg0", norm("norm1", "P_bg0")["P_bg0"])
    for stage in (1, 2, 3):
        stream = f"P_bg{stage - 1}"
        if stage > 1:
            prev = f"P_bg{stage - 2}"
            sc = f"layer{stage}.0.shortcut"
            add(prev, [(f"{sc}.0.weight", 1)])
            add(stream, [(f"{sc}.0.weight", 0)] + norm(f"{sc}.1", stream)[stream])
        for b in range(blocks):
            blk = f"layer{stage}.{b}"
            inner = f"P_{blk}_inner"
            reader = f"P_bg{stage - 2}" if (b == 0 and stage > 1) else stream
            add(reader, [(f"{blk}.conv1.weight", 1)])
            add(inner, [(f"{blk}.conv1.weight", 0)] + norm(f"{blk}.norm1", inner)[inner])
            add(inner, [(f"{blk}.conv2.weight", 1)])
            add(stream, [(f"{blk}.conv2.weight", 0)] + norm(f"{blk}.norm2", stream)[stream])
    add("P_bg2", [("head.weight", 1)])
    return spec


def test_resnet20_ties_stages_like_git_re_basin():
    model, x = _tiny("resnet20")
    G = sl.symmetries(model, x)
    hand = _resnet20_spec()
    d = diff(G, hand)
    assert d.ok, str(d)
    assert len(G.permutation_spec()) == len(hand) == 12
    # the typo of git-re-basin's issue #3 kind: a block's output norm tied to the inner perm
    broken = _resnet20_spec()
    broken["P_bg1"].remove(("layer2.1.norm2.weight", 0))
    broken["P_layer2.1_inner"].append(("layer2.1.norm2.weight", 0))
    d = diff(G, broken)
    assert not d.ok and ("layer2.1.norm2.weight", 0) in d.mistied_axes


def test_zoo_is_reachable_from_the_package():
    assert "resnet20" in sl.nn.zoo.registry.names()
