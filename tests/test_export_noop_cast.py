"""``x.to(x's own dtype)`` through torch.export: torch returns ``x`` itself, and the export
graph then records every later read of ``x`` — the residual stream kept before the call too —
as a read of the cast. Llama's RMSNorm (``hidden_states.to(torch.float32)``) in a float32
model therefore looked like a norm whose input leaks out of it, and every Llama-family model
in the default dtype was refused at its ``rsqrt``. Such a call is read as its input; a real
copy (``copy=True``, another dtype or memory format) stays a node (``_returns_self``'s
doctest)."""

from __future__ import annotations

import pytest
import torch
from patterns_util import force_export, scramble
from torch import nn

import symlab as sl


class Block(nn.Module):
    """A residual block with Llama's RMSNorm written out, casts included."""

    def __init__(self, d=6, how="noop"):
        super().__init__()
        self.how = how
        self.weight = nn.Parameter(torch.ones(d))
        self.up, self.down = nn.Linear(d, 8), nn.Linear(8, d)

    def forward(self, x):
        residual = x
        copy = self.how == "copy"  # a new tensor: stays a node
        h = x.to(torch.float32, copy=True) if copy else x.to(torch.float32)
        var = h.pow(2).mean(-1, keepdim=True)
        h = self.weight * (h * torch.rsqrt(var + 1e-6)).to(x.dtype)
        return residual + self.down(torch.relu(self.up(h)))


def _x(dtype=torch.float32):
    return torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(0), dtype=dtype)


def _signature(G):
    return [(f.kind, f.size) for f in G.factors]


@pytest.mark.parametrize("how", ["noop", "copy"])
def test_float32_block_through_export_matches_float64(how, monkeypatch):
    force_export(monkeypatch)
    torch.manual_seed(0)
    model = scramble(nn.Sequential(Block(how=how), Block(how=how)).eval())
    G32 = sl.symmetries(model, _x())
    G64 = sl.symmetries(model.double(), _x(torch.float64))
    assert _signature(G32) == _signature(G64)
    assert any(n.op == "rmsnorm" for n in G32.graph.nodes())
    assert any(f.kind == "permutation" and f.size == 8 for f in G32.factors)
    assert sl.check_invariance(model, G32, _x(torch.float64)).passed


@pytest.mark.parametrize("name", ["Llama", "Qwen3", "Gemma"])
def test_transformers_decoders_in_float32(name):
    """The models as users build them (float32) get the group of their float64 copies."""
    transformers = pytest.importorskip("transformers")
    cfg = getattr(transformers, f"{name}Config")(
        vocab_size=11, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, head_dim=4, max_position_embeddings=16,
        use_cache=False,
    )  # fmt: skip
    model = getattr(transformers, f"{name}Model")(cfg).eval()
    ids = {"input_ids": torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))}
    G32 = sl.symmetries(model, ids)
    G64 = sl.symmetries(model.double(), ids)
    assert _signature(G32) == _signature(G64)
    assert any(n.op.startswith("attention_") for n in G32.graph.nodes())
    assert sl.check_invariance(scramble(model), G64, ids).passed
