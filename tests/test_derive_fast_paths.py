"""The fast paths of a derivation give the group the exact computation gives.

Deriving a real model reads what it needs without running it for real: torch.export's graph
without source lines (they are recorded only when an error must point at the user's code), the
leaf modules' calls from hooks on export's own run (fake tensors), the shape pass on fake tensors
with the parameters made fake once. Here each is switched back to the exact computation (an
eager run with real values, a real shape pass, source lines on) for small configurations of the
three models of the speed benchmark (GPT-2, BERT, ViT-B/16's architecture) and the two groups
must be the same: graph, factors, order. And no linear layer of the model ever sees a real
tensor on the torch.export path (negative control: the exact path does show it real ones; the
torch.fx path's shape pass is compared with ShapeProp's in tests/test_shapes.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.nn import functional as F

import symlab as sl
import symlab.frontend.export as export_mod
import symlab.frontend.fx as fx_mod
from symlab.frontend.export_calls import LeafCalls
from symlab.frontend.shapes import record_shapes
from symlab.testing._torchvision_compat import ensure_torchvision_importable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ensure_torchvision_importable()
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def _gpt2(heads: int = 2) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=50, n_embd=8, n_layer=2, n_head=heads,
                                  n_positions=16, use_cache=False)  # fmt: skip
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0))
    return transformers.GPT2Model(cfg).eval(), {"input_ids": ids}


def _bert() -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=12,
                                  max_position_embeddings=16)  # fmt: skip
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(0))
    return transformers.BertModel(cfg).eval(), {"input_ids": ids}


def _vit() -> tuple[nn.Module, torch.Tensor]:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=8, mlp_dim=12)  # fmt: skip
    return model.eval(), torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


MODELS: dict[str, Callable[[], tuple[nn.Module, Any]]] = {
    "gpt2": _gpt2, "bert": _bert, "vit": _vit,
}  # fmt: skip


def _structure(G: sl.SymmetryGroup) -> tuple[Any, ...]:
    nodes = [(n.name, n.op, str(n.width), n.params) for n in G.graph.nodes()]
    return G.graph.frontend, nodes, list(G.factors), str(G.order)


def _exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fast path switched back to the exact computation."""
    monkeypatch.setattr(LeafCalls, "_needs_values", lambda self, g: True)  # an eager real run
    monkeypatch.setattr(fx_mod, "record_shapes", partial(record_shapes, fake=False))
    on = export_mod._stack_traces
    monkeypatch.setattr(export_mod, "_stack_traces", lambda _: on(True))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fast_paths_derive_the_exact_group(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = MODELS[name]()
    fast = sl.symmetries(model, x)
    assert fast.graph.frontend == ("torch.fx" if name == "vit" else "torch.export")
    assert any(f.kind == "permutation" for f in fast.factors)
    with monkeypatch.context() as m:
        _exact(m)
        exact = sl.symmetries(model, x)
    assert _structure(fast) == _structure(exact)


def test_the_structure_compared_tells_groups_apart() -> None:
    """Negative control: one attention head instead of two is a different group."""
    two, one = (sl.symmetries(*_gpt2(h)) for h in (2, 1))
    assert _structure(two) != _structure(one)


def _inputs_seen_by_linear(name: str, monkeypatch: pytest.MonkeyPatch) -> set[type]:
    """The types of the inputs ``F.linear`` (``nn.Linear``'s and attention's projections) is
    called on while the group is derived."""
    seen: set[type] = set()
    linear = F.linear

    def spy(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.add(type(x))
        return linear(x, *args, **kwargs)

    model, x = MODELS[name]()
    with monkeypatch.context() as m:
        m.setattr(F, "linear", spy)
        sl.symmetries(model, x)
    return seen


def test_no_layer_runs_on_real_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """BERT through torch.export: its layers see export's fake tensors and the shape pass's."""
    assert _inputs_seen_by_linear("bert", monkeypatch) == {FakeTensor}
    _exact(monkeypatch)  # negative control: the exact computation runs the layers for real
    assert torch.Tensor in _inputs_seen_by_linear("bert", monkeypatch)


def test_a_refusal_on_the_export_path_still_names_the_source_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.export runs without source lines; a refusal exports again with them."""

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-1] == 3  # stops torch.fx
            return self.b(torch.asinh(self.a(x)))

    with pytest.raises(sl.errors.UnsupportedOpError) as e:
        sl.symmetries(Odd(), torch.randn(2, 3))
    assert "test_derive_fast_paths.py" in str(e.value) and "torch.asinh(self.a(x))" in str(e.value)
    off = export_mod._stack_traces  # negative control: never with source lines
    monkeypatch.setattr(export_mod, "_stack_traces", lambda _: off(False))
    with pytest.raises(sl.errors.UnsupportedOpError) as e:
        sl.symmetries(Odd(), torch.randn(2, 3))
    assert "torch.asinh(self.a(x))" not in str(e.value)
