"""A functional layer on its module's own parameter read through reshapes that give back the
parameter's own shape (Qwen3.5's causal convolution: ``F.conv1d(x, conv1d.weight.squeeze(1)
.unsqueeze(1), groups=channels)``) is that module's layer; a weight computed in any other way
is not (symlab.frontend.functional_layers.stored)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ops_contexts import export_only, kinds, prove
from torch import nn

import symlab as sl

X = torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


class Causal(nn.Module):
    """A depthwise causal convolution over the tokens between two Linears, its weight read
    as ``form`` says: the module call (the twin), the Qwen3.5 reshapes, a view of the same
    shape, or (refused or read otherwise) a flipped or a shared weight."""

    def __init__(self, form: str, channels: int = 4, k: int = 3):
        super().__init__()
        self.form, self.k = form, k
        self.proj, self.head = nn.Linear(3, channels), nn.Linear(channels, 2)
        self.conv1d = nn.Conv1d(channels, channels, k, groups=channels, padding=k - 1)

    def weight(self) -> torch.Tensor:
        w = self.conv1d.weight
        if self.form == "squeeze":
            return w.squeeze(1).unsqueeze(1)
        if self.form == "view":
            return w.view(-1).view(w.shape)
        if self.form == "flip":
            return w.flip(-1)
        raise AssertionError(self.form)

    def forward(self, x):
        t = x.shape[1]
        h = self.proj(x).transpose(1, 2)
        if self.form == "module":
            out = self.conv1d(h)
        else:
            c = h.shape[1]
            out = F.conv1d(h, self.weight(), self.conv1d.bias, padding=self.k - 1, groups=c)
        return self.head(F.silu(out[:, :, :t]).transpose(1, 2))


def _twins(form: str) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model, twin = Causal(form).double().eval(), Causal("module").double().eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


@pytest.mark.parametrize("export", [False, True])
@pytest.mark.parametrize("form", ["squeeze", "view"])
def test_a_weight_reshaped_back_to_its_shape_is_the_modules(form, export):
    model, twin = _twins(form)
    torch.testing.assert_close(model(X), twin(X))
    if export:
        with export_only():
            G = prove(model, X, brute=False)
    else:
        G = prove(model, X, brute=False)
    G_twin = sl.symmetries(twin, X)
    assert kinds(G) == kinds(G_twin) and G.dimension == G_twin.dimension
    assert "conv1d" in [n.name for n in G.graph.nodes()]


def test_control_a_flipped_weight_is_not_the_modules():
    """``w.flip(-1)`` computes another kernel: not read as the module's layer."""
    model, _ = _twins("flip")
    with pytest.raises(sl.errors.UnsupportedOpError, match="conv1d"):
        sl.symmetries(model, X)


class Twice(Causal):
    """The reshaped weight also read elsewhere (``w.view(-1)`` in a penalty on the output):
    not the layer's alone, so it is not read as the module's layer."""

    def forward(self, x):
        y = super().forward(x)
        return y + self.conv1d.weight.view(-1).sum()


def test_control_a_reshaped_weight_read_elsewhere_too_is_not_the_modules():
    torch.manual_seed(0)
    model = Twice("squeeze").double().eval()
    with pytest.raises(sl.errors.UnsupportedOpError, match="conv1d"):
        sl.symmetries(model, X)
