"""git-re-basin PermutationSpec interop: export, import, JSON, validation and diff."""

import json
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

import symlab as sl
from symlab.symmetry.spec_io import (
    PermutationSpec,
    SpecError,
    diff,
    export,
    from_axes_to_perm,
    from_perm_to_axes,
    load_json,
    save_json,
)

L0, L1 = "P[layers.0.linear]", "P[layers.1.linear]"


@pytest.fixture(scope="module")
def mlp():
    net = sl.nn.MLP([4, 6, 6, 2])
    return net, sl.symmetries(net)


def hand_mlp_spec():
    """The MLP's spec written by hand, git-re-basin style, with our own perm names."""
    return {
        "P_1": [("layers.0.linear.weight", 0), ("layers.0.linear.bias", 0),
                ("layers.1.linear.weight", 1)],
        "P_2": [("layers.1.linear.weight", 0), ("layers.1.linear.bias", 0), ("head.weight", 1)],
    }  # fmt: skip


def test_export_gives_both_mappings(mlp):
    net, G = mlp
    spec = export(G)
    assert spec.to_perm_to_axes() == G.permutation_spec()
    sd = net.state_dict()
    a2p = spec.to_axes_to_perm()
    assert a2p.keys() == sd.keys()  # every parameter listed, as git-re-basin's specs do
    assert all(len(a2p[k]) == sd[k].ndim for k in sd)
    assert a2p["layers.1.linear.weight"] == (L1, L0)
    assert a2p["layers.0.linear.weight"] == (L0, None)
    assert a2p["head.bias"] == (None,)
    assert spec.perm_of("head.weight", 1) == L1 and spec.perm_of("head.weight", 0) is None


def test_round_trip_through_axes_to_perm(mlp):
    net, G = mlp
    spec = export(G)
    back = from_axes_to_perm(spec.to_axes_to_perm(), shapes=net.state_dict())
    assert back == spec
    assert back.to_perm_to_axes() == G.permutation_spec()  # same lists, same order
    # without shapes the axes_to_perm view only covers what the permutations touch
    bare = from_perm_to_axes(G.permutation_spec())
    assert "head.bias" not in bare.axes_to_perm and bare.axes_to_perm["head.weight"] == (None, L1)
    assert from_axes_to_perm(bare.to_axes_to_perm()).to_perm_to_axes() == G.permutation_spec()
    assert bare != spec and bare.perm_to_axes == spec.perm_to_axes


def test_json_round_trip(mlp, tmp_path):
    spec = export(mlp[1])
    path = tmp_path / "spec.json"
    save_json(spec, path)
    raw = json.loads(path.read_text())
    assert raw["axes_to_perm"]["layers.1.linear.weight"] == [L1, L0]
    assert load_json(path) == spec
    raw["axes_to_perm"]["layers.1.linear.bias"] = [L0]  # tamper: disagrees with perm_to_axes
    path.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"axes_to_perm\['layers.1.linear.bias'\]\[0\]"):
        load_json(path)
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        load_json(path)


def test_reads_git_rebasin_named_tuple(mlp):
    class GitRebasinSpec(NamedTuple):  # git-re-basin's own container
        perm_to_axes: dict
        axes_to_perm: dict

    a2p = {"layers.0.linear.weight": ("P_1", None), "layers.0.linear.bias": ("P_1",),
           "layers.1.linear.weight": ("P_2", "P_1"), "layers.1.linear.bias": ("P_2",),
           "head.weight": (None, "P_2"), "head.bias": (None,)}  # fmt: skip
    p2a = {}
    for k, perms in a2p.items():  # git-re-basin's permutation_spec_from_axes_to_perm
        for axis, p in enumerate(perms):
            if p is not None:
                p2a.setdefault(p, []).append((k, axis))
    theirs = GitRebasinSpec(p2a, a2p)
    assert PermutationSpec.coerce(theirs) == from_axes_to_perm(a2p)
    assert diff(mlp[1], theirs).ok
    assert diff(mlp[1], a2p).ok and diff(mlp[1], p2a).ok  # either dict is understood
    broken = GitRebasinSpec({**p2a, "P_1": p2a["P_1"][:2]}, a2p)
    with pytest.raises(SpecError, match="disagree"):
        PermutationSpec.coerce(broken)


@pytest.mark.parametrize(
    ("p2a", "message"),
    [
        ({"A": [("w", 0)], "B": [("w", 0)]}, r"axis 0 of 'w' is listed in both 'A' and 'B'"),
        ({"A": [("w", 0), ("w", 0)]}, "listed twice in 'A'"),
        ({"A": []}, "'A' moves no axis"),
        ({"A": [("w", -1)]}, "axis -1 of 'w'"),
        ({"A": [("w", "0")]}, "axis '0' of 'w'"),
        ({"A": [("w", 0, 1)]}, "not a \\(param, axis\\) pair"),
        ({"A": "w"}, r"perm_to_axes\['A'\] must be a list"),
        ({"A": [(3, 0)]}, "parameter name 3"),
    ],
)
def test_malformed_perm_to_axes_is_refused(p2a, message):
    with pytest.raises(SpecError, match=message):
        from_perm_to_axes(p2a)


def test_shapes_are_checked(mlp):
    sd = mlp[0].state_dict()
    spec = hand_mlp_spec()
    full = from_perm_to_axes(spec, shapes=sd)
    assert full.axes_to_perm.keys() == sd.keys() and diff(full, export(mlp[1])).ok
    wrong_size = {"P_1": [*spec["P_1"], ("head.weight", 0)], "P_2": spec["P_2"]}  # 6 vs 2
    with pytest.raises(SpecError, match="axis 0 of 'head.weight' has 2"):
        from_perm_to_axes(wrong_size, shapes=sd)
    with pytest.raises(SpecError, match=r"\['head.bias'\] has 2 entries but 'head.bias' has 1"):
        from_axes_to_perm({"head.bias": (None, None)}, shapes=sd)
    with pytest.raises(SpecError, match="'nope.weight', which is not among the shapes"):
        from_perm_to_axes({"P": [("nope.weight", 0)]}, shapes=sd)
    with pytest.raises(SpecError, match=r"axes_to_perm\['w'\]\[1\] is 7"):
        from_axes_to_perm({"w": ("P", 7)})
    with pytest.raises(SpecError, match="lacks"):
        PermutationSpec({"P": [("w", 1)]}, {"w": ()})


# -- diff ---------------------------------------------------------------------------------------


def test_diff_of_identical_specs_is_ok_up_to_renaming(mlp):
    G = mlp[1]
    d = diff(G, G)
    assert d.ok and dict(d.renaming) == {L0: L0, L1: L1}
    d = diff(G, hand_mlp_spec())
    assert d.ok and dict(d.renaming) == {L0: "P_1", L1: "P_2"}
    assert "agree up to renaming" in str(d)


def test_diff_finds_a_missing_axis(mlp):
    hand = hand_mlp_spec()
    hand["P_2"] = [ax for ax in hand["P_2"] if ax != ("layers.1.linear.bias", 0)]
    d = diff(mlp[1], hand)
    assert not d.ok
    assert d.missing == (("layers.1.linear.bias", 0),) and not d.extra and not d.mistied
    assert "layers.1.linear.bias axis 0" in str(d) and "missing" in str(d)
    assert diff(mlp[1], hand, ignore=lambda p: p.endswith("bias")).ok


def test_diff_finds_an_extra_axis(mlp):
    hand = hand_mlp_spec()
    hand["P_2"].append(("head.bias", 0))  # claims the output units can be permuted
    d = diff(mlp[1], hand)
    assert not d.ok and d.extra == (("head.bias", 0),) and not d.missing and not d.mistied
    assert "extra" in str(d) and "head.bias axis 0" in str(d)


def test_diff_finds_a_typo_that_ties_layer_ones_rows_to_the_wrong_permutation(mlp):
    hand = hand_mlp_spec()
    hand["P_1"].remove(("layers.0.linear.weight", 0))
    hand["P_2"].append(("layers.0.linear.weight", 0))  # the typo
    d = diff(mlp[1], hand)
    assert not d.ok and not d.missing and not d.extra
    assert ("layers.0.linear.weight", 0) in d.mistied_axes
    by_perm = {m.perm: m for m in d.mistied}
    assert set(by_perm) == {L0, "P_2"}
    assert dict(by_perm[L0].parts) == {
        "P_2": (("layers.0.linear.weight", 0),),
        "P_1": (("layers.0.linear.bias", 0), ("layers.1.linear.weight", 1)),
    }
    assert {q for q, _ in by_perm["P_2"].parts} == {L0, L1}
    assert not d.renaming  # neither hand-written perm corresponds to one derived perm
    text = str(d)
    assert "mis-tied" in text and f"derived {L0}" in text and "hand-written P_2" in text


def test_diff_finds_an_axis_left_untied(mlp):
    hand = hand_mlp_spec()
    hand["P_2"].remove(("layers.1.linear.bias", 0))
    hand["P_9"] = [("layers.1.linear.bias", 0)]  # permuted on its own
    d = diff(mlp[1], hand)
    assert [m.perm for m in d.mistied] == [L1]
    assert {q for q, _ in d.mistied[0].parts} == {"P_2", "P_9"}
    assert dict(d.renaming) == {L0: "P_1"}


@st.composite
def spec_pair(draw):
    """A random spec, the same spec renamed and reordered, and a copy with one axis moved."""
    n_params = draw(st.integers(2, 5))
    axes = [(f"w{i}", a) for i in range(n_params) for a in range(draw(st.integers(1, 3)))]
    labels = draw(st.lists(st.integers(0, 3), min_size=len(axes), max_size=len(axes)))
    spec: dict[str, list] = {}
    for ax, lab in zip(axes, labels, strict=True):
        spec.setdefault(f"P{lab}", []).append(ax)
    renamed = {f"Q{len(spec) - i}": list(reversed(v)) for i, v in enumerate(spec.values())}
    moved = draw(st.sampled_from(axes))
    others = [p for p in spec if moved not in spec[p]]
    broken = {p: [ax for ax in v if ax != moved] for p, v in spec.items()}
    broken = {p: v for p, v in broken.items() if v}
    if others:  # move the axis into another permutation ...
        broken[draw(st.sampled_from(others))].append(moved)
    else:  # ... or, when there is only one, into a new one of its own
        broken["P_new"] = [moved]
    return spec, renamed, broken, moved


@given(spec_pair())
def test_diff_is_blind_to_names_and_order_but_sees_a_moved_axis(case):
    spec, renamed, broken, moved = case
    assert diff(spec, renamed).ok
    d = diff(spec, broken)
    singleton = len(next(v for v in spec.values() if moved in v)) == 1
    if singleton and "P_new" in broken:
        assert d.ok  # a lone axis moved into a lone new perm is only a renaming
    elif singleton:
        assert not d.ok and moved in d.mistied_axes  # merged into another perm
    else:
        assert not d.ok and moved in d.mistied_axes
