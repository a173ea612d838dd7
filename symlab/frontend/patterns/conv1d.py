"""Recognise GPT-2's ``Conv1D`` (a linear map with an ``(in, out)`` weight) in a torch.fx graph.

transformers' ``Conv1D`` computes::

    size_out = x.size()[:-1] + (self.nf,)
    x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)   # weight: (in, out)
    return x.view(size_out)

which is ``nn.Linear`` with the weight transposed. Any ``addmm(b, x.view(-1, C), W)`` (``beta``
and ``alpha`` 1) whose ``W`` is a parameter of shape ``(C, out)``, ``b`` a parameter of shape
``(out,)`` and whose result is viewed back to ``x``'s leading shape becomes one ``linear_t``
node (rule: :mod:`symlab.symmetry.linear_t_rules`), named after the module owning the weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.fx as fx

from symlab.frontend.patterns.registry import register_pattern
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["Conv1DMatch", "Conv1DProjection", "emit_conv1d", "find_conv1d", "projections"]

_VIEW = {"view", "reshape", torch.reshape}


@dataclass(frozen=True)
class Conv1DMatch:
    """One ``y = x W + b``: input, output, the keys of ``W`` and ``b``, swallowed nodes."""

    x: fx.Node
    out: fx.Node
    weight: str
    bias: str
    nodes: frozenset[fx.Node]


@dataclass(frozen=True)
class Conv1DProjection:
    """A ``Conv1D`` match seen as a projection by the attention matcher (the attributes of
    ``nn.Linear`` it reads, and where the weight lives)."""

    match: Conv1DMatch
    in_features: int
    out_features: int
    bias: bool = True

    @property
    def prefix(self) -> str:
        return self.match.weight.rpartition(".")[0]


def projections(gm: fx.GraphModule) -> dict[fx.Node, Conv1DProjection]:
    """Every ``Conv1D`` of ``gm`` whose weight and bias live in one module read once, keyed by
    its output node."""
    found, _ = find_conv1d(gm, keep_shared=False)
    params = dict(gm.named_parameters())
    out = {}
    for n, m in found.items():
        if m.bias.rpartition(".")[0] != m.weight.rpartition(".")[0]:
            continue
        c, nf = params[m.weight].shape
        out[n] = Conv1DProjection(m, int(c), int(nf))
    return out


def _shape(n: object) -> tuple[int, ...] | None:
    tm = n.meta.get("tensor_meta") if isinstance(n, fx.Node) else None
    return tuple(int(s) for s in tm.shape) if hasattr(tm, "shape") else None


def _param(n: object, params: dict[str, torch.nn.Parameter]) -> str | None:
    if isinstance(n, fx.Node) and n.op == "get_attr" and str(n.target) in params:
        return str(n.target)
    return None


def _match(a: fx.Node, params: dict[str, torch.nn.Parameter]) -> Conv1DMatch | None:
    if a.op != "call_function" or a.target is not torch.addmm or a.kwargs or len(a.args) != 3:
        return None
    b, xv, w = a.args
    bk, wk = _param(b, params), _param(w, params)
    if bk is None or wk is None or not isinstance(xv, fx.Node):
        return None
    if xv.op != "call_method" or xv.target not in _VIEW or len(a.users) != 1:
        return None
    x = xv.args[0]
    out = next(iter(a.users))
    sx, sv, so = _shape(x), _shape(xv), _shape(out)
    wshape, bshape = tuple(params[wk].shape), tuple(params[bk].shape)
    if sx is None or sv is None or so is None or len(wshape) != 2:
        return None
    c, nf = wshape
    lead = sx[:-1]
    if sx[-1] != c or sv != (math.prod(lead), c) or bshape != (nf,) or so != (*lead, nf):
        return None
    if not (out.op == "call_method" and out.target in _VIEW) or len(xv.users) != 1:
        return None
    return Conv1DMatch(x, out, wk, bk, frozenset({xv, a, b, w}))  # type: ignore[arg-type]


def find_conv1d(
    gm: fx.GraphModule, keep_shared: bool = True
) -> tuple[dict[fx.Node, Conv1DMatch], set[fx.Node]]:
    """Matches keyed by their output view, and the nodes they swallow (the parameters' reads
    only where nothing else reads them). ``keep_shared=False`` leaves out the calls of a
    module called more than once."""
    params = dict(gm.named_parameters())
    matches: dict[fx.Node, Conv1DMatch] = {}
    gone: set[fx.Node] = set()
    calls: dict[str, int] = {}
    for n in gm.graph.nodes:
        m = _match(n, params)
        if m is None:
            continue
        calls[m.weight] = calls.get(m.weight, 0) + 1
        inner = {k for k in m.nodes if k.op != "get_attr" or len(k.users) == 1}
        matches[m.out] = Conv1DMatch(m.x, m.out, m.weight, m.bias, frozenset(inner))
        gone |= inner
    if not keep_shared:
        matches = {n: m for n, m in matches.items() if calls[m.weight] == 1}
    return matches, gone


def emit_conv1d(cv: Converter, m: Conv1DMatch) -> str:
    """Add the ``linear_t`` node of ``m`` (keys under the module owning the weight; a second
    call of the same module reads the same keys: weight sharing)."""
    x = cv.name[m.x]
    shape = cv.meta_shape(m.out) or ()
    c, nf = shape and (cv.shape[x][-1], shape[-1])  # type: ignore[misc]
    if cv.fa[x] != len(cv.shape[x]) - 1 and cv.g.node(x).op != "input":  # (inputs never move)
        return cv.emit(m.out, f"@{m.out.name}", "opaque", [x])
    prefix, _, wname = m.weight.rpartition(".")
    bprefix, _, bname = m.bias.rpartition(".")
    if bprefix != prefix or not prefix:  # (weights of the root module: keys without a prefix)
        params = [ParamSpec(m.weight, (c, nf), ("in", "out")), ParamSpec(m.bias, (nf,), ("out",))]
        return cv.emit(m.out, f"@{m.out.name}", "linear_t", [x], -1, params, absolute_keys=True,
                       weight_key=m.weight, bias_key=m.bias)  # fmt: skip
    params = [ParamSpec(wname, (c, nf), ("in", "out")), ParamSpec(bname, (nf,), ("out",))]
    name = prefix if prefix and prefix not in cv.g.nx else f"@{m.out.name}"
    return cv.emit(m.out, name, "linear_t", [x], -1, params, key_prefix=prefix,
                   weight_key=wname, bias_key=bname)  # fmt: skip


register_pattern("conv1d", find_conv1d, emit_conv1d, yields=True)  # attention may take them
