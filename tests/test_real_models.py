"""Models no one here wrote, called as users call them: Hugging Face models with keyword inputs
(their ``**kwargs`` forwards stop torch.fx, torch.export reads them), a dict of inputs, the
invariance check on the same inputs; any failure of a front-end that is not a symlab error is a
TraceError naming the front-end, the model and the cause."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import symlab as sl
from symlab.frontend.convert import Converter
from symlab.testing._torchvision_compat import ensure_torchvision_importable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ensure_torchvision_importable()
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TINY = {"vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 12, "max_position_embeddings": 16, "num_labels": 3,
        "layer_norm_eps": 1e-30, "use_cache": False}  # fmt: skip


def _bert() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**TINY)
    model = transformers.BertForSequenceClassification(cfg).double().eval()
    ids = torch.randint(1, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return model, ids, mask


def test_hugging_face_model_called_directly_with_keyword_inputs() -> None:
    model, ids, mask = _bert()
    G = sl.symmetries(model, (ids,), kwargs={"attention_mask": mask})
    assert G.graph.frontend == "torch.export"  # BERT's forward takes **kwargs: fx fails
    assert G.log10_order > 10 and any(f.kind == "permutation" for f in G.factors)
    assert sl.check_invariance(model, G, (ids,), kwargs={"attention_mask": mask}).passed
    inputs = {"input_ids": ids, "attention_mask": mask}  # a tokenizer's output
    G2 = sl.symmetries(model, inputs)
    assert G2.order == G.order and G2.dimension == G.dimension
    assert sl.check_invariance(model, G2, inputs, samples=4).passed


def test_check_invariance_fails_on_a_wrong_element_of_a_hugging_face_model() -> None:
    """Negative control: a permutation of the feed-forward units applied to one of its two
    weight matrices only changes the outputs, and the check on keyword inputs sees it."""
    model, ids, mask = _bert()
    G = sl.symmetries(model, {"input_ids": ids, "attention_mask": mask})
    sd = dict(model.state_dict())
    key = "bert.encoder.layer.0.intermediate.dense.weight"
    sd[key] = sd[key].flip(0)
    out = torch.func.functional_call(model, sd, (), {"input_ids": ids, "attention_mask": mask})
    ref = model(input_ids=ids, attention_mask=mask)
    assert not torch.allclose(out.logits, ref.logits)
    assert G.graph.frontend == "torch.export"


def test_keyword_inputs_on_the_torch_fx_path() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 1.0):
            h = torch.relu(self.fc1(x))
            out = self.fc2(h) * scale
            return out if mask is None else out * mask

    net = Net().double()
    x, mask = torch.randn(3, 4, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)
    for inputs in ({"x": x}, {"x": x, "mask": mask}, {"x": x, "scale": 2.0}):
        G = sl.symmetries(net, inputs)
        assert G.graph.frontend == "torch.fx"
        assert [f.kind for f in G.factors if f.kind == "permutation"] == ["permutation"]
        assert sl.check_invariance(net, G, inputs).passed
    with pytest.raises(sl.errors.DataError, match="not both"):
        sl.symmetries(net, {"x": x}, kwargs={"mask": mask})


def test_a_crash_inside_a_front_end_is_a_trace_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Converter) -> None:
        raise IndexError("list index out of range")

    monkeypatch.setattr(Converter, "run", broken)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(sl.errors.TraceError) as info:
        sl.symmetries(net, torch.randn(2, 3))
    text = str(info.value)
    assert "torch.export" in text and "Sequential" in text and "IndexError" in text
    assert "torch.fx failed first" in text  # both front-ends tried, both reasons given


def test_clip_and_siglip_vision_towers_are_derived_and_sound() -> None:
    """They used to crash with an IndexError (a module called with a buffer of position ids)."""
    torch.manual_seed(0)
    for name in ("clip_vision_model", "siglip_vision_model"):
        cfg = transformers.AutoConfig.for_model(
            name, hidden_size=8, intermediate_size=12, num_hidden_layers=1,
            num_attention_heads=2, image_size=16, patch_size=8, layer_norm_eps=1e-30,
        )  # fmt: skip
        model = transformers.AutoModel.from_config(cfg).double().eval()
        x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
        G = sl.symmetries(model, x)
        assert G.log10_order > 1
        assert sl.check_invariance(model, G, x, samples=3).passed
