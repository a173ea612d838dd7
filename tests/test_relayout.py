"""Rearranging ops keep units whole: transposes, reshapes, expands, indexing (ViT-style models)."""

from __future__ import annotations

import math
import operator

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import symlab as sl
from symlab.frontend.axes import moved_feature_axis


def _labelled(shape: tuple[int, ...], fa: int) -> torch.Tensor:
    """A tensor whose every entry is its index along ``fa`` (its unit)."""
    idx = torch.arange(shape[fa]).reshape([-1 if d == fa else 1 for d in range(len(shape))])
    return idx.expand(shape).clone()


@st.composite
def _rearrangements(draw: st.DrawFn) -> tuple:
    nd = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)))
    fa = draw(st.integers(0, nd - 1))
    kind = draw(st.sampled_from(["transpose", "permute", "reshape", "unsqueeze", "index"]))
    if kind == "transpose":
        args = (draw(st.integers(0, nd - 1)), draw(st.integers(0, nd - 1)))
    elif kind == "permute":
        args = tuple(draw(st.permutations(range(nd))))
    elif kind == "unsqueeze":
        args = (draw(st.integers(0, nd)),)
    elif kind == "reshape":  # merge or split a random run of axes
        start = draw(st.integers(0, nd - 1))
        end = draw(st.integers(start, nd - 1))
        args = (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
    else:
        index = tuple(
            draw(st.sampled_from([slice(None), slice(1, None), 0, None])) for _ in range(nd)
        )
        args = (index,)
    return kind, shape, fa, args


def _apply(kind: str, x: torch.Tensor, args: tuple) -> torch.Tensor:
    if kind == "index":
        return x[args[0]]
    return getattr(x, kind)(*args) if kind != "permute" else x.permute(*args)


@given(_rearrangements())
def test_moved_axis_is_where_the_units_are(case) -> None:
    kind, shape, fa, args = case
    x = _labelled(shape, fa)
    try:
        y = _apply(kind, x, args)
    except (IndexError, RuntimeError):
        return  # e.g. x[1:] on an axis of size 1 gives an empty tensor; nothing to claim
    fn = operator.getitem if kind == "index" else kind
    j = moved_feature_axis(fn, args, fa, shape, tuple(y.shape))
    if kind in ("transpose", "permute", "unsqueeze") and shape[fa] > 1:
        assert j is not None  # pure rearrangements are always recognised
    if j is not None and y.numel():
        assert torch.equal(y, _labelled(tuple(y.shape), j)), (kind, shape, fa, args, j)


def test_feature_axis_lost_when_units_merge_or_are_indexed() -> None:
    assert moved_feature_axis("view", (2, 64), 2, (2, 8, 8), (2, 64)) is None
    assert moved_feature_axis(operator.getitem, ((Ellipsis, slice(0, 4)),), 2, (2, 5, 8),
                              (2, 5, 4)) is None  # fmt: skip
    assert moved_feature_axis(operator.getitem, ((Ellipsis, 0),), 2, (2, 5, 8), (2, 5)) is None


class _Block(nn.Module):
    def __init__(self, e: int, h: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(e, eps=1e-12), nn.LayerNorm(e, eps=1e-12)
        self.attn = nn.MultiheadAttention(e, h, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(e, 2 * e), nn.GELU(), nn.Linear(2 * e, e))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class _ViT(nn.Module):
    """A small ViT written like timm/torchvision: conv patches, flatten(2).transpose(1, 2),
    class token, learned positions, pre-norm blocks, head on the class token."""

    def __init__(self, e: int = 8, heads: int = 2, patch: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, e, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, e))
        self.pos = nn.Parameter(torch.randn(1, 5, e))
        self.blocks = nn.ModuleList(_Block(e, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(e, eps=1e-12), nn.Linear(e, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls.expand(x.shape[0], -1, -1), x), dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def test_vit_residual_stream_is_one_permuted_space() -> None:
    torch.manual_seed(0)
    vit = _ViT().double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    G = sl.symmetries(vit, x)
    stream = [f for f in G.factors if f.kind == "permutation" and ("cls", 2) in f.axes]
    assert len(stream) == 1 and int(stream[0].size) == 8
    moved = {k for k, _ in stream[0].axes}
    assert {"cls", "pos", "patch.weight", "head.weight", "blocks.1.attn.in_proj_weight"} <= moved
    assert sum(1 for f in G.factors if f.kind == "translation") == 2  # the two key biases
    assert sl.check_invariance(vit, G, x).passed
    # negative control: permuting the stream without the class token breaks the function
    h = G.sample(0)
    sd = G.act(h, vit.state_dict())
    sd["cls"] = vit.state_dict()["cls"]
    wrong = _ViT().double().eval()
    wrong.load_state_dict(sd)
    assert not torch.allclose(wrong(x), vit(x), atol=1e-6)
