"""Softmax shift invariance: ``softmax(z + c·1) = softmax(z)`` for any ``c``
(docs/concepts/symmetries.md).

Where the logits ``z`` of a softmax (or log-softmax) over the feature axis are produced by a
linear map ``z = W x + b`` (or a convolution, softmax over channels) read by nothing else, every
``W ↦ W + 1 vᵀ``, ``b ↦ b + c 1`` leaves the output unchanged: it adds ``vᵀx + c`` to every
logit of a sample. These are :class:`~symlab.symmetry.spec.Translation` factors of dimension
``fan_in + 1`` (``fan_in`` without a bias). In attention, the key bias ``b_K`` adds
``q_i · b_K`` to every score of query ``i``, the same for every key, so ``b_K`` is free: a
translation of dimension ``H·d`` (:func:`key_bias_translation`).

A softmax whose logits come from anything else (or are read elsewhere, or are a network output)
is *opaque*: its input and output stay fixed and no translation is derived (sound).
"""

from __future__ import annotations

import math

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import OpSymmetry, Params, Translation

__all__ = ["key_bias_translation", "logit_translation", "softmax_rule"]

_LOGIT_PRODUCERS = ("linear", "conv")


@rule("softmax")
def softmax_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """Softmax / log-softmax over the feature axis: input and output fixed; when a linear map
    or convolution produces the logits for this softmax alone, its rows may all be shifted by
    one vector and its bias by one constant (a translation factor).

    >>> import symlab as sl
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5), nn.Softmax(dim=-1))
    >>> [f.short() for f in sl.symmetries(net).factors]
    ['S_4', '{±1}^4', '(R^5,+)']
    """
    (x,) = graph.inputs(node.name)
    spec = OpSymmetry(fixed=[x, node.name])
    producer = graph.node(x)
    if producer.op in _LOGIT_PRODUCERS and graph.consumers(x) == [node.name]:
        spec.translations.append(logit_translation(producer))
    return spec


def logit_translation(
    node: Node, suffix: str = "logit_shift", *, weight: bool = True
) -> Translation:
    """The translations ``W ↦ W + 1 ⊗ V``, ``b ↦ b + c 1`` of a linear map or convolution whose
    outputs only ever meet a softmax (or a LayerNorm) over them (``V`` has the shape of one
    output row); ``weight=False``: the bias shift alone (a weight tied elsewhere cannot move)."""
    w_spec = next(p for p in node.params if p.name == "weight")
    row = tuple(w_spec.shape[1:])
    fan_in = math.prod(row) if all(isinstance(d, int) for d in row) else _sym_prod(row)
    fan_in = fan_in if weight else 0
    bias = any(p.name == "bias" for p in node.params)

    def embed(t: torch.Tensor, params: Params) -> dict[str, torch.Tensor]:
        w = params["weight"]
        out = {}
        if weight:
            v = t[: w[0].numel()].reshape(w.shape[1:]).to(w.dtype)
            out["weight"] = v.expand_as(w).clone()
        if bias:
            out["bias"] = t[-1].to(w.dtype).expand_as(params["bias"]).clone()
        return out

    def project(update: Params) -> torch.Tensor:
        parts = [update["weight"][0].reshape(-1)] if weight else []
        if bias:
            parts.append(update["bias"][:1])
        return torch.cat(parts)

    axes = ((("weight", 0),) if weight else ()) + ((("bias", 0),) if bias else ())
    return Translation(
        suffix, node.name, fan_in + int(bias), embed, project, axes,
        note="one vector added to every row, one constant to every bias: the same amount "
        "added to every output, which the softmax / normalisation after it removes",
    )  # fmt: skip


def key_bias_translation(node: Node, name: str, start: int, size: int) -> Translation:
    """The key bias of attention, entries ``start : start + size`` of parameter ``name``: any
    value leaves every softmax over keys unchanged."""

    def embed(t: torch.Tensor, params: Params) -> dict[str, torch.Tensor]:
        b = torch.zeros_like(params[name])
        b[start : start + size] = t.to(b.dtype)
        return {name: b}

    def project(update: Params) -> torch.Tensor:
        return update[name][start : start + size].clone()

    return Translation(
        "key_bias", node.name, size, embed, project, ((name, 0),),
        note="key bias: adds q·b_K to every score of a query, which the softmax ignores",
    )  # fmt: skip


def _sym_prod(dims: tuple[object, ...]) -> object:
    import sympy as sp

    return sp.Mul(*[sp.sympify(d) for d in dims])
