"""Issue 15, item 6: a derived group and an alignment saved to a file without pickle
(safetensors + JSON) and loaded back act, sample and apply exactly as before; a file for another
architecture is refused with a named error."""

from __future__ import annotations

import json
import struct

import pytest
import sympy as sp
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import symlab as sl
from symlab import errors
from symlab.nn import MLP, zoo
from symlab.train import save_checkpoint


def _model(name: str) -> tuple[torch.nn.Module, torch.Tensor | None]:
    if name == "mlp":
        return MLP([5, 7, 6, 3], activation="tanh", seed=0), None
    if name == "wasym_mlp":
        return MLP([5, 7, 6, 3], asym={"num_fixed": 2, "kappa": 1.0}, seed=0), None
    kw = zoo.tiny(name)
    return zoo.get(name, **kw), zoo.example_input(name, **kw)


@pytest.mark.parametrize(
    "name", ["mlp", "wasym_mlp", "resnet20", "hand_transformer", "figlu_resnet20"]
)
def test_group_round_trip_acts_and_samples_identically(tmp_path, name):
    model, x = _model(name)
    G = sl.symmetries(model, x)
    path = sl.io.save_group(G, tmp_path / f"{name}.safetensors")
    H = sl.io.load_group(path, model=model)
    assert H.signature == G.signature and H.order == G.order and H.dimension == G.dimension
    assert sl.io.group_digest(H) == sl.io.group_digest(G)
    sd = model.state_dict()
    for seed in (0, 1):
        h = G.sample(torch.Generator().manual_seed(seed))
        k = H.sample(torch.Generator().manual_seed(seed))
        assert all(torch.equal(h[f.name], k[f.name]) for f in G.factors)
        a, b = G.act(h, sd), H.act(k, sd)
        assert all(torch.equal(a[key], b[key]) for key in sd)
    assert repr(H) == repr(G)


def test_the_file_is_safetensors_with_json_metadata(tmp_path):
    G = sl.symmetries(MLP([5, 7, 3], asym={"num_fixed": 2, "kappa": 1.0}))
    path = sl.io.save_group(G, tmp_path / "g.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])  # plain JSON, no pickle anywhere
    meta = header["__metadata__"]
    assert meta["format"] == "symlab.SymmetryGroup" and meta["version"] == "1"
    assert json.loads(meta["graph"])["nodes"][0]["op"] == "input"
    assert sorted(k for k in header if k != "__metadata__") == sorted(
        f"fixed/{k}" for k in G.fixed_data
    )


def test_load_refuses_another_architecture(tmp_path):
    path = sl.io.save_group(sl.symmetries(MLP([5, 7, 3])), tmp_path / "g.safetensors")
    with pytest.raises(errors.ArchitectureMismatchError, match="another architecture"):
        sl.io.load_group(path, model=MLP([5, 8, 3]))
    with pytest.raises(errors.ArchitectureMismatchError, match="graph differs"):
        sl.io.load_group(path, model=MLP([5, 7, 3], activation="tanh"))  # same shapes
    kw = zoo.tiny("resnet20")
    with pytest.raises(errors.ArchitectureMismatchError, match="ResNet20"):
        sl.io.load_group(path, model=zoo.get("resnet20", **kw))
    with pytest.raises(errors.ArchitectureMismatchError, match="graph differs"):  # mask seed
        sl.io.load_group(path, model=MLP([5, 7, 3], asym={"num_fixed": 2, "kappa": 1.0}))
    kw = zoo.tiny("wasym_resnet20")
    x = zoo.example_input("wasym_resnet20", **kw)
    p2 = sl.io.save_group(
        sl.symmetries(zoo.get("wasym_resnet20", mask_seed=0, **kw), x), tmp_path / "w.safetensors"
    )
    with pytest.raises(errors.ArchitectureMismatchError, match="fixed data .* differ"):
        sl.io.load_group(p2, model=zoo.get("wasym_resnet20", mask_seed=1, **kw))
    assert sl.io.load_group(p2, model=zoo.get("wasym_resnet20", mask_seed=0, seed=3, **kw))


def test_load_refuses_what_is_not_a_saved_group(tmp_path):
    with pytest.raises(errors.FileFormatError, match="does not exist"):
        sl.io.load_group(tmp_path / "nope.safetensors")
    ckpt = save_checkpoint(MLP([3, 4, 2]), tmp_path / "ckpt.safetensors")
    with pytest.raises(errors.FileFormatError, match="not a saved SymmetryGroup"):
        sl.io.load_group(ckpt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(errors.FileFormatError, match="not a readable safetensors file"):
        sl.io.load_group(junk)
    with pytest.raises(errors.ArgumentError, match="must end in .safetensors"):
        sl.io.save_group(sl.symmetries(MLP([3, 4, 2])), tmp_path / "g.pkl")
    with pytest.raises(errors.WidthError, match="integer widths"):
        sl.io.save_group(
            sl.symmetries(sl.graph.mlp([3, sp.Symbol("n"), 2])), tmp_path / "s.safetensors"
        )


def test_a_file_this_symlab_derives_differently_is_refused(tmp_path):
    path = sl.io.save_group(sl.symmetries(MLP([5, 7, 3])), tmp_path / "g.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    factors = json.loads(meta["factors"])
    factors[0][1] = "GL"  # as if an older symlab had derived another group from this graph
    meta["factors"] = json.dumps(factors)
    save_file({}, str(path), metadata=meta)
    with pytest.raises(errors.FileFormatError, match="derives a different group"):
        sl.io.load_group(path)


def test_alignment_round_trip(tmp_path):
    net = MLP([5, 8, 8, 3], seed=0)
    G = sl.symmetries(net)
    sd = net.state_dict()
    h = G.element(
        {"P[layers.0.linear]": torch.randperm(8, generator=torch.Generator().manual_seed(1))}
    )
    moved = G.act(h, sd)
    al = sl.align.weight_matching(sd, moved, G, canonical_scale=True)
    path = sl.io.save_alignment(al, tmp_path / "al.safetensors")
    for back in (sl.io.load_alignment(path), sl.io.load_alignment(path, G)):
        assert back.method == al.method and back.objective == al.objective
        assert back.trace == al.trace and back.info == json.loads(json.dumps(al.info))
        assert all(torch.equal(back.perms[k], al.perms[k]) for k in al.perms)
        a, b = back.apply(moved), al.apply(moved)
        assert all(torch.equal(a[k], b[k]) for k in sd)
    assert sl.io.load_alignment(path, G).group is G
    with pytest.raises(errors.ArchitectureMismatchError, match="another symmetry group"):
        sl.io.load_alignment(path, sl.symmetries(MLP([5, 8, 9, 3])))
    with pytest.raises(errors.FileFormatError, match="holds 'symlab.Alignment'"):
        sl.io.load_group(path)
    with pytest.raises(errors.ArgumentError, match="must be an Alignment"):
        sl.io.save_alignment(G, tmp_path / "x.safetensors")
