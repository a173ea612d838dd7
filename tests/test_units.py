"""Data no parameter reaches (ids, masks, positions) is fixed, whatever op made it; ops on data a
parameter reaches still need their rule (negative controls), on both front-ends."""

from __future__ import annotations

import pytest
import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

import symlab as sl
from symlab.frontend.units import unit_carrying


class MaskedPool(nn.Module):
    """Token ids → embeddings, with position ids from ``cumsum`` of the mask, pooling at the last
    real token (``argmax``), ``new_zeros``, comparisons and ``|`` on the mask: none of these
    ops has a rule, and none needs one."""

    def __init__(self, guarded: bool = False) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(20, 6), nn.Embedding(16, 6)
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)
        self.guarded = guarded

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.guarded:
            assert ids.shape[1] <= 16  # Python code on sizes: torch.fx fails, torch.export reads it
        keep = (ids != 0) | (mask == 1)
        positions = torch.cumsum(mask, dim=1) * keep  # position ids from the mask
        last = torch.argmax(positions, dim=1)  # the last real token
        onehot = ids.new_zeros(ids.shape).float() + F.one_hot(last, ids.shape[1])
        h = torch.tanh(self.fc1(self.emb(ids) + self.pos(positions)))
        logits = self.fc2(h)
        return (logits * onehot.unsqueeze(-1)).sum(dim=1)  # the logits at the last real token


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 20, (3, 5), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    return ids, mask


@pytest.mark.parametrize("guarded", [False, True], ids=["torch.fx", "torch.export"])
def test_ops_on_fixed_data_need_no_rule(guarded: bool) -> None:
    torch.manual_seed(0)
    model = MaskedPool(guarded).double().eval()
    inputs = _inputs()
    g = sl.trace(model, inputs)
    assert g.frontend == ("torch.export" if guarded else "torch.fx")
    G = sl.symmetries(model, inputs)
    # fc1's hidden units: permutations and tanh's sign flips survive the fixed data around them
    assert [(f.kind, f.name) for f in G.factors if f.kind == "permutation"] == [
        ("permutation", "P[fc1]")
    ]
    assert sl.check_invariance(model, G, inputs, samples=4).passed
    assert sl.check_invariance(model, G, {"ids": inputs[0], "mask": inputs[1]}).passed


def test_the_classification_is_what_parameters_change() -> None:
    """Every node classified as fixed computes the same values under two different parameter
    settings; a node classified as carrying units changes (the classification is exact here)."""
    torch.manual_seed(0)
    model = MaskedPool().double().eval()
    gm = fx.symbolic_trace(model)
    carrying = unit_carrying(gm, model.state_dict())

    def values(seed: int) -> dict[fx.Node, torch.Tensor]:
        torch.manual_seed(seed)
        for p in model.parameters():
            nn.init.normal_(p)
        interp = fx.Interpreter(gm, garbage_collect_values=False)
        interp.run(*_inputs())
        return {n: v for n, v in interp.env.items() if isinstance(v, torch.Tensor)}

    a, b = values(1), values(2)
    for node, va in a.items():
        same = va.shape == b[node].shape and torch.equal(va, b[node])
        assert same == (node not in carrying), node.name


class Refused(nn.Module):
    """cumprod on hidden units: an op without a rule on data a parameter reaches."""

    def __init__(self, where: str, guarded: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)
        self.where, self.guarded = where, guarded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.guarded:
            assert x.shape[-1] == 4
        h = torch.relu(self.fc1(x))
        if self.where == "direct":
            z = h
        else:  # fixed data written in place with hidden units: a view of it carries them now
            zeros = x.new_zeros(x.shape[0], 6)
            z = zeros.view(x.shape[0], 6)  # taken before the write, which it sees
            zeros.add_(h)
        return self.fc2(torch.cumprod(z, dim=-1))


@pytest.mark.parametrize("where", ["direct", "view written in place"])
@pytest.mark.parametrize("guarded", [False, True], ids=["torch.fx", "torch.export"])
def test_an_op_on_unit_carrying_data_still_needs_its_rule(where: str, guarded: bool) -> None:
    model = Refused(where, guarded)
    with pytest.raises(sl.errors.UnsupportedOpError, match="cumprod|add_|new_zeros"):
        sl.symmetries(model, torch.randn(3, 4))
