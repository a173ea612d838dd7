"""Issue 15, item 5: what a group and a training result print.

The "moves" column of every factor is what acting with that factor alone changes (checked by
acting on the real parameters), a ResNet-20 group prints by stage in wrapped lines, and
``repr(TrainResult)`` is short."""

from __future__ import annotations

import re

import pytest
import torch

import symlab as sl
from symlab.nn import zoo
from symlab.symmetry.display import WIDTH, factor_moves


def _alone(G: sl.SymmetryGroup, name: str) -> sl.symmetry.GroupElement:
    """An element that is ``name``'s factor (at a value moving every unit) and nothing else."""
    f = next(f for f in G.factors if f.name == name)
    n = int(f.size)
    if f.kind == "permutation":
        value = torch.arange(n)
        for block in f.blocks or [list(range(n))]:
            value[torch.tensor(block)] = torch.tensor(block).roll(1)
    elif f.kind in ("sign", "flip", "common_sign"):
        value = -G.identity()[name]
    else:
        value = G.sample(torch.Generator().manual_seed(3))[name]
    return G.element({name: value})


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.allclose(after[k].double(), before[k].double(),
                                                      rtol=1e-12, atol=1e-12)}  # fmt: skip


def _model(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    if name == "encoder_layer":
        torch.manual_seed(0)
        block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True).double()
        return block, torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0)).double()
    kw = zoo.tiny(name)
    return zoo.get(name, **kw).double(), zoo.example_input(name, **kw)


@pytest.mark.parametrize("name", ["encoder_layer", "hand_transformer", "resnet20"])
def test_moves_is_what_the_factor_alone_changes(name):
    model, x = _model(name)
    x = x.double() if x.is_floating_point() else x
    G = sl.symmetries(model, x)
    g = torch.Generator().manual_seed(0)
    fixed = {k for k, (_, spec) in G.graph.state_keys().items() if spec.kind == "fixed"}
    sd = {  # random values: at init a norm's weights are all 1, which no permutation changes
        k: torch.randn(v.shape, generator=g, dtype=torch.float64)
        if v.is_floating_point() and k not in fixed
        else v
        for k, v in model.state_dict().items()
    }
    for f in G.factors:
        listed = {m.split(":")[0] for m in factor_moves(G, f)}
        assert listed == _changed(sd, G.act(_alone(G, f.name), sd)), f.name


def test_qk_block_moves_only_query_and_key_rows():
    block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    G = sl.symmetries(block, torch.randn(2, 3, 8))
    text = repr(G)
    qk = next(ln for ln in text.splitlines() if "GL[self_attn#qk]" in ln)
    assert "out_proj" not in qk and "in_proj_weight:0[0:16]" in qk
    sd = block.state_dict()
    after = G.act(_alone(G, "GL[self_attn#qk]"), sd)
    rows = (after["self_attn.in_proj_weight"] != sd["self_attn.in_proj_weight"]).any(1)
    assert rows.nonzero().flatten().tolist() == list(range(16))  # q and k rows, not v
    vo = next(ln for ln in text.splitlines() if "GL[self_attn#vo]" in ln)
    assert "[16:24]" in vo


def test_a_sign_flip_before_batchnorm_moves_its_weight_not_its_variance():
    kw = zoo.tiny("resnet20")
    G = sl.symmetries(zoo.get("resnet20", **kw), zoo.example_input("resnet20", **kw))
    moves = factor_moves(G, next(f for f in G.factors if f.name == "sign[conv1]"))
    assert "norm1.weight" in moves and "norm1.running_mean:0" in moves
    assert not any(m.startswith("norm1.running_var") for m in moves)


def test_a_resnet_group_prints_by_stage_in_wrapped_lines():
    net = zoo.get("resnet20")
    text = repr(sl.symmetries(net, zoo.example_input("resnet20")))
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= WIDTH
    stages = [ln.split(":")[0].strip() for ln in lines if re.match(r"^  \S+: ", ln)]
    assert stages == ["conv1", "norm1", "layer1", "layer2", "layer3"]
    assert "S_16^3" in next(ln for ln in lines if ln.startswith("  layer1:"))


def test_short_groups_keep_their_one_line_product():
    text = repr(sl.symmetries(sl.nn.MLP([4, 8, 8, 2])))
    assert text.splitlines()[0] == "SymmetryGroup  S_8 × R_{>0}^8 × S_8 × R_{>0}^8"


def test_train_result_repr_is_short():
    x = torch.randn(64, 3)
    data = sl.data.from_tensors(x, (x[:, 0] > 0).long(), num_classes=2)
    r = sl.train.train(torch.nn.Linear(3, 2), data, sl.train.TrainConfig(steps=200, batch_size=8))
    text = repr(r)
    assert len(text) < 250 and "tensor(" not in text and "\n" not in text
    assert "steps=200" in text and "step_losses [200]" in text


def test_a_large_group_prints_its_declared_axes_without_acting(monkeypatch):
    """Above ACT_BUDGET parameter elements the printed group lists the axes each factor acts
    on (no action runs: printing a ViT-B/16 or a ResNet-50 takes milliseconds), says so, and
    factor_moves still acts when asked."""
    from symlab.symmetry import display

    block = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    G = sl.symmetries(block, torch.randn(2, 3, 8))
    small = repr(G)
    assert "acts on" not in small and "moves self_attn.in_proj_weight:0[0:16]" in small
    H = sl.symmetries(block, torch.randn(2, 3, 8))  # a fresh group: nothing cached

    def no_acting(*args, **kwargs):
        raise AssertionError("the display acted")

    monkeypatch.setattr(display, "ACT_BUDGET", 0)
    with monkeypatch.context() as m:
        m.setattr(display, "_acted_moves", no_acting)
        text = repr(H)
    assert "a large model" in text
    qk = next(ln for ln in text.splitlines() if "GL[self_attn#qk]" in ln)
    assert "acts on self_attn.in_proj_weight:0" in qk and "[0:16]" not in qk
    f = next(f for f in H.factors if f.name == "GL[self_attn#qk]")
    assert factor_moves(H, f) == factor_moves(G, f)  # acting on demand, as before
    assert max(len(ln) for ln in text.splitlines()) <= WIDTH
