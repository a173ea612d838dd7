"""The building blocks of the attention matcher (:mod:`symlab.frontend.patterns.attention`):
the match it returns, the labelled values it tracks along the graph, and the op sets it knows.

Shared by the matcher and its extensions (:mod:`.attention_forms`), so that imports flow one
way: base ← forms ← matcher.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

__all__ = ["AttentionMatch"]

_LINEARS = (nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear)
_RESHAPE = {"view", "reshape", "unflatten", "flatten", torch.reshape, torch.flatten}
_TRANSPOSE = {"transpose", torch.transpose, "permute", torch.permute}
_IDENTITY = {"contiguous", "clone", F.dropout, "to", "float", "double", "type_as"}  # casts too
_SCALE = {operator.mul, operator.truediv, torch.mul, torch.div, "mul", "div"}
_SOFTMAX = {F.softmax, torch.softmax, "softmax"}
_MATMUL = {operator.matmul, torch.matmul, "matmul"}
_SHAPE_OPS = {"size", "dim", getattr, operator.getitem, operator.mul, operator.floordiv,
              operator.truediv, operator.add, operator.sub, operator.pow, operator.neg,
              math.sqrt}  # fmt: skip
_MAX_NODES = 64


@dataclass(frozen=True)
class AttentionMatch:
    """One recognised attention block: its four Linear call nodes and what lies between."""

    q: fx.Node
    k: fx.Node
    v: fx.Node
    o: fx.Node
    interior: frozenset[fx.Node]
    num_heads: int
    head_dim: int
    head_dim_v: int
    rows: tuple[tuple[fx.Node, int, int], ...] | None = None  # fused: (Linear, offset, rows)
    masks: frozenset[fx.Node] = frozenset()  # fixed nodes read only by the masks
    softmax_keys: bool = False  # the values are weighted by a softmax over the keys
    num_kv_heads: int = 0  # key/value heads (grouped-query attention); 0: num_heads
    rope: tuple[str, int] | None = None  # rotary embedding: (layout, rotated dimensions)
    projs: tuple[tuple[fx.Node, Any], ...] = ()  # projections that are Conv1D (node, match)
    head_bias: bool = False  # a fixed bias per head on the scores (ALiBi): heads distinguishable
    norms: tuple[tuple[str, Any, str], ...] = ()  # QK-norm: ("q" | "k", NormSite, scope)
    # fused Linears whose rows are laid out head by head: (Linear, heads, part sizes per head)
    by_head: tuple[tuple[fx.Node, int, tuple[int, ...]], ...] = ()


class _NoMatch(Exception):
    pass


@dataclass
class _Val:
    kind: str  # "proj" | "scores" | "out" | "merged"
    labels: tuple[str, ...]
    shape: tuple[int, ...]


@dataclass
class _State:
    vals: dict[fx.Node, _Val] = field(default_factory=dict)
    qk: tuple[str, str] | None = None
    v: str | None = None
    split: dict[str, tuple[int, int]] = field(default_factory=dict)  # projection -> (H, D)
    parts: dict[fx.Node, tuple[str, Any]] = field(default_factory=dict)  # cuts of fused rows
    rows: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # part -> leaf rows
    soft: set[fx.Node] = field(default_factory=set)  # scores after a softmax over the keys
    shift_kept: bool = True  # every op before the softmax keeps a per-query shift of scores
    weighted_by_softmax: bool = False
    rope: dict[str, tuple[str, int]] = field(default_factory=dict)  # projection -> rotary
    rep: dict[str, int] = field(default_factory=dict)  # projection -> heads repeated (GQA)
    head_bias: bool = False  # a fixed per-head bias was added to the scores (ALiBi)
    norms: dict[str, tuple[Any, str]] = field(default_factory=dict)  # projection -> QK-norm
    by_head: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)  # (H, parts)


def _require(cond: bool) -> None:
    if not cond:
        raise _NoMatch


def _shape(node: fx.Node) -> tuple[int, ...]:
    tm = node.meta.get("tensor_meta")
    _require(hasattr(tm, "shape"))
    return tuple(int(s) for s in tm.shape)


def _is_tensor(node: fx.Node) -> bool:
    return hasattr(node.meta.get("tensor_meta"), "shape")


def _shape_scalar(a: Any, depth: int = 0) -> bool:
    """A Python number, or a value computed from tensor sizes only (never from tensor data)."""
    if isinstance(a, int | float) and not isinstance(a, bool):
        return True
    if not isinstance(a, fx.Node) or depth > 8 or _is_tensor(a):
        return False
    if a.op not in ("call_function", "call_method") or a.target not in _SHAPE_OPS:
        return False
    if a.target is getattr and a.args[1] != "shape":
        return False
    if a.target in ("size", "dim") or (a.target is getattr):
        return True  # reads only the shape of its tensor
    return all(_shape_scalar(b, depth + 1) for b in a.args) and not a.kwargs
