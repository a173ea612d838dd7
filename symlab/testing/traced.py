"""Hypothesis strategies for traced models: random CNNs (plain, residual, depthwise, normed)
and transformer blocks. Each draws ``(model, example_input)`` in float64, eval mode, with
normalisation eps tiny so that norm invariances are checked to 1e-5."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

__all__ = ["cnn_models", "transformer_models"]

_ACTS = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu, "leaky_relu": F.leaky_relu,
         "identity": lambda x: x, "sigmoid": torch.sigmoid}  # fmt: skip


class RandomCNN(nn.Module):
    """conv → [norm] → act, repeated, optional residual blocks and a depthwise conv, then
    pooling or flattening into a linear head, optionally followed by a (log-)softmax."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        c_in, c = cfg["in_channels"], cfg["channels"]
        self.stem = nn.Conv2d(c_in, c, 3, padding=1, bias=cfg["bias"])
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, 3, padding=1, bias=cfg["bias"]) for _ in range(cfg["depth"])
        )
        norm = {"batch": lambda: nn.BatchNorm2d(c, eps=1e-12),
                "group": lambda: nn.GroupNorm(2 if c % 2 == 0 else 1, c, eps=1e-12),
                None: nn.Identity}[cfg["norm"]]  # fmt: skip
        self.norms = nn.ModuleList(norm() for _ in range(cfg["depth"] + 1))
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c) if cfg["depthwise"] else None
        spatial = 4 if cfg["maxpool"] else 8
        self.pool = nn.MaxPool2d(2) if cfg["maxpool"] else nn.Identity()
        feat = c if cfg["head"] == "mean" else c * spatial * spatial
        self.fc = nn.Linear(feat, cfg["out"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = _ACTS[self.cfg["act"]]
        x = act(self.norms[0](self.stem(x)))
        for conv, norm in zip(self.convs, self.norms[1:], strict=True):
            y = act(norm(conv(x)))
            x = x + y if self.cfg["residual"] else y
        if self.dw is not None:
            x = self.dw(x)
        x = self.pool(x)
        x = x.mean(dim=(2, 3)) if self.cfg["head"] == "mean" else torch.flatten(x, 1)
        return _HEADS[self.cfg["softmax"]](self.fc(x))


_HEADS = {None: lambda z: z, "softmax": lambda z: z.softmax(-1),
          "log_softmax": lambda z: F.log_softmax(z, dim=1)}  # fmt: skip


@st.composite
def cnn_models(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    """Random small CNNs with their example input.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=2, deadline=None, database=None)
    ... @given(cnn_models())
    ... def check(model_and_input):
    ...     model, x = model_and_input
    ...     assert model(x).shape[0] == x.shape[0]
    >>> check()
    """
    cfg = {
        "in_channels": draw(st.integers(1, 3)),
        "channels": draw(st.integers(2, 6)),
        "depth": draw(st.integers(0, 2)),
        "bias": draw(st.booleans()),
        "norm": draw(st.sampled_from([None, "batch", "group"])),
        "act": draw(st.sampled_from(sorted(_ACTS))),
        "residual": draw(st.booleans()),
        "depthwise": draw(st.booleans()),
        "maxpool": draw(st.booleans()),
        "head": draw(st.sampled_from(["mean", "flatten"])),
        "out": draw(st.integers(1, 3)),
        "softmax": draw(st.sampled_from([None, "softmax", "log_softmax"])),
    }
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = RandomCNN(cfg).double()
    x = torch.randn(6, cfg["in_channels"], 8, 8, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))  # fmt: skip
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval(), x


class RandomTransformer(nn.Module):
    """Linear embedding → encoder layers (nn or hand-written MLP) → mean-pooled head."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        e = cfg["heads"] * cfg["head_dim"]
        self.embed = nn.Linear(cfg["in"], e)
        layer = nn.TransformerEncoderLayer(
            e, cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True,
            norm_first=cfg["norm_first"], activation=cfg["act"], layer_norm_eps=1e-12,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, cfg["layers"], enable_nested_tensor=False)
        self.head = nn.Linear(e, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


@st.composite
def transformer_models(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    """Random small transformer encoders with their example input.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=2, deadline=None, database=None)
    ... @given(transformer_models())
    ... def check(model_and_input):
    ...     model, x = model_and_input
    ...     assert model(x).shape[0] == x.shape[0]
    >>> check()
    """
    heads = draw(st.integers(1, 3))
    cfg = {
        "in": draw(st.integers(2, 5)),
        "heads": heads,
        # at least 3 model units: LayerNorm over 2 is binary, and a token whose two features
        # nearly coincide has a variance near eps, where its scale invariance fails by design
        "head_dim": draw(st.integers(-(-3 // heads), 4)),
        "ff": draw(st.integers(2, 8)),
        "layers": draw(st.integers(1, 2)),
        "norm_first": draw(st.booleans()),
        "act": draw(st.sampled_from(["relu", "gelu"])),
    }
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    model = RandomTransformer(cfg).double().eval()
    x = torch.randn(3, 4, cfg["in"], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return model, x
