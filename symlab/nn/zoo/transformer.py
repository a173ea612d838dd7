"""Transformer encoders: one from ``nn.TransformerEncoderLayer``, one with attention by hand.

:class:`TransformerClassifier` is the usual PyTorch encoder (Vaswani et al. 2017): token
embedding plus a learned positional embedding, ``num_layers`` independent
``nn.TransformerEncoderLayer``s (``batch_first=True``; pre- or post-LN), a final LayerNorm, mean
pooling over tokens and a linear head. :class:`HandAttention` writes multi-head attention out of
``nn.Linear`` + reshape + softmax + matmul, the way user code (e.g. nanoGPT) does, and
:class:`HandTransformerBlock` / :class:`HandTransformer` build a pre-LN encoder from it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from symlab.nn.zoo._common import seeded

__all__ = ["HandAttention", "HandTransformer", "HandTransformerBlock", "TransformerClassifier"]


class _Encoder(nn.Module):
    """Embedding + learned positions → blocks → LayerNorm → mean over tokens → head."""

    def __init__(
        self, vocab_size: int, seq_len: int, d_model: int, num_classes: int, blocks: list[nn.Module]
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        # a (1, seq_len, d_model) parameter added to every sequence: inputs must have seq_len
        # tokens (no slicing by the input's length, which tracing could not follow)
        self.pos_embed = nn.Parameter(torch.randn(1, seq_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(x.mean(dim=1))


class TransformerClassifier(_Encoder):
    """A token classifier built from ``nn.TransformerEncoderLayer``.

    Args:
        vocab_size: number of token ids.
        seq_len: tokens per sequence (inputs are ``(batch, seq_len)`` integer tensors).
        d_model: width of the residual stream.
        nhead: attention heads (``d_model`` must be divisible by it).
        num_layers: encoder layers (each built separately, unlike ``nn.TransformerEncoder``,
            which deep-copies one layer so that all start equal).
        dim_feedforward: hidden width of the MLPs (default ``4 · d_model``).
        num_classes: outputs of the head.
        dropout: dropout probability (default 0: deterministic outputs).
        activation: ``"relu"`` or ``"gelu"`` in the MLPs.
        norm_first: pre-LN (default) or post-LN layers.
        seed: seeds the initialisation (the global RNG is left untouched).

    >>> net = TransformerClassifier(vocab_size=11, seq_len=5, d_model=8, nhead=2, num_layers=1)
    >>> tuple(net(torch.zeros(3, 5, dtype=torch.long)).shape)
    (3, 10)
    """

    def __init__(
        self,
        vocab_size: int = 64,
        seq_len: int = 16,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int | None = None,
        num_classes: int = 10,
        *,
        dropout: float = 0.0,
        activation: str = "relu",
        norm_first: bool = True,
        seed: int = 0,
    ) -> None:
        if d_model % nhead:
            raise ValueError(f"d_model={d_model} is not divisible by nhead={nhead}")
        with seeded(seed, 0):
            layers: list[nn.Module] = [
                nn.TransformerEncoderLayer(
                    d_model,
                    nhead,
                    dim_feedforward=dim_feedforward or 4 * d_model,
                    dropout=dropout,
                    activation=activation,
                    batch_first=True,
                    norm_first=norm_first,
                )
                for _ in range(num_layers)
            ]
            super().__init__(vocab_size, seq_len, d_model, num_classes, layers)


class HandAttention(nn.Module):
    """Multi-head self-attention written out: ``o(merge(softmax(Q Kᵀ / √d_head) V))``.

    ``q``, ``k``, ``v`` and ``o`` are ``nn.Linear(d_model, d_model)``; heads are split with
    ``unflatten`` and merged with ``flatten``. Input and output are ``(batch, tokens, d_model)``.

    >>> att = HandAttention(8, 2)
    >>> tuple(att(torch.zeros(3, 5, 8)).shape)
    (3, 5, 8)
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.k = nn.Linear(d_model, d_model, bias=bias)
        self.v = nn.Linear(d_model, d_model, bias=bias)
        self.o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = (self.num_heads, self.head_dim)
        q = self.q(x).unflatten(-1, heads).transpose(1, 2)  # (batch, heads, tokens, head_dim)
        k = self.k(x).unflatten(-1, heads).transpose(1, 2)
        v = self.v(x).unflatten(-1, heads).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        weights = torch.softmax(scores, dim=-1)
        out = torch.matmul(weights, v)  # (batch, heads, tokens, head_dim)
        out = out.transpose(1, 2).flatten(2)  # (batch, tokens, d_model)
        return self.o(out)


class HandTransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln1(x))``, then ``+ mlp(ln2(x))`` with a GELU MLP.

    >>> blk = HandTransformerBlock(8, 2)
    >>> tuple(blk(torch.zeros(3, 5, 8)).shape)
    (3, 5, 8)
    """

    def __init__(self, d_model: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = HandAttention(d_model, num_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class HandTransformer(_Encoder):
    """:class:`TransformerClassifier`'s structure with :class:`HandTransformerBlock`s.

    >>> net = HandTransformer(vocab_size=11, seq_len=5, d_model=8, num_heads=2, num_layers=1)
    >>> tuple(net(torch.zeros(3, 5, dtype=torch.long)).shape)
    (3, 10)
    """

    def __init__(
        self,
        vocab_size: int = 64,
        seq_len: int = 16,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        num_classes: int = 10,
        *,
        mlp_ratio: int = 4,
        seed: int = 0,
    ) -> None:
        with seeded(seed, 0):
            blocks: list[nn.Module] = [
                HandTransformerBlock(d_model, num_heads, mlp_ratio) for _ in range(num_layers)
            ]
            super().__init__(vocab_size, seq_len, d_model, num_classes, blocks)
