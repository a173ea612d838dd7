"""The ops the conformance harness exercises: per registered op, the layers that reach it.

:data:`OP_SNIPPETS` maps every op with a symmetry rule to snippets — small modules that take a
tensor of ``c`` units (a feature vector, a sequence or a feature map) and return one, written the
way users write them (functional calls, the same tensor twice, 0-dim and broadcast parameters).
:data:`MODULE_FACTORIES` makes every module type the front-end reads. Register more with
:func:`register_snippets` / :func:`register_module_factory`; the test suite fails for an op or
module type that has none, so a rule cannot be registered without conformance cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from symlab.nn.asymmetric import FiGLU, WAsymLinear
from symlab.nn.asymmetric_conv import FiGLU2d, WAsymConv2d

__all__ = [
    "KINDS",
    "MODULE_FACTORIES",
    "OP_SNIPPETS",
    "Snippet",
    "register_module_factory",
    "register_snippets",
]

#: tensor kinds: the feature axis and the shape of one example (batch first)
KINDS = {"vec": (8,), "seq": (3, 4), "map1": (4, 5), "map2": (3, 4, 4), "map3": (2, 3, 3, 3)}


@dataclass(frozen=True)
class Snippet:
    """A module factory ``make(c)`` mapping ``kind_in`` tensors with ``c`` units to
    ``kind_out`` tensors (any width); ``name`` says what it is."""

    name: str
    make: Callable[[int], nn.Module]
    kind_in: str = "vec"
    kind_out: str | None = None  # None: same as kind_in


class Fn(nn.Module):
    """A functional snippet: ``forward`` is ``fn(self, h)``; ``params`` are its parameters."""

    def __init__(self, fn: Callable[..., torch.Tensor], **params: nn.Module | torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        for k, v in params.items():
            if isinstance(v, nn.Module):
                self.add_module(k, v)
            elif isinstance(v, nn.Parameter):
                self.register_parameter(k, v)
            else:
                self.register_buffer(k, v)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(self, h)


def _p(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(shape))


OP_SNIPPETS: dict[str, list[Snippet]] = {}
MODULE_FACTORIES: dict[type[nn.Module], Callable[[int, str], nn.Module]] = {}


def register_snippets(op: str, snippets: list[Snippet]) -> None:
    """Add conformance snippets for ``op`` (see the module docstring).

    >>> register_snippets("doctest_op", [Snippet("noop", lambda c: nn.Identity())])
    >>> [s.name for s in OP_SNIPPETS.pop("doctest_op")]
    ['noop']
    """
    OP_SNIPPETS.setdefault(op, []).extend(snippets)


def register_module_factory(t: type[nn.Module], make: Callable[[int, str], nn.Module]) -> None:
    """How to make a module of type ``t`` for ``c`` units of a tensor of a kind.

    >>> register_module_factory(nn.Identity, lambda c, kind: nn.Identity())
    >>> MODULE_FACTORIES[nn.Identity](3, "vec")
    Identity()
    """
    MODULE_FACTORIES[t] = make


def _acts() -> list[Snippet]:
    from symlab.symmetry.builtin_rules import ACTIVATION_ADMITS

    fns = {
        "identity": lambda h: h,
        "square": lambda h: h * h,
        "leaky_relu": F.leaky_relu,
        "softplus": F.softplus,
        "hardtanh": lambda h: F.hardtanh(h, -0.5, 1.0),
    }
    out = []
    for name in ACTIVATION_ADMITS:
        fn = fns.get(name) or getattr(F, name, None) or getattr(torch, name)
        for kind in ("vec", "map2"):
            out.append(Snippet(f"{name}/{kind}", lambda c, f=fn: Fn(lambda s, h: f(h)), kind))
    out.append(Snippet("hardtanh-sym", lambda c: nn.Hardtanh(-2.0, 2.0)))
    out.append(Snippet("softplus-beta", lambda c: nn.Softplus(beta=2.0)))
    return out


def _binary() -> dict[str, list[Snippet]]:
    lin = lambda c: nn.Linear(c, c)  # noqa: E731
    return {
        "add": [
            Snippet("branches", lambda c: Fn(lambda s, h: F.relu(s.l(h)) + h, l=lin(c))),
            Snippet("self", lambda c: Fn(lambda s, h: h + h)),
            Snippet("sub-self", lambda c: Fn(lambda s, h: h - h + s.l(h), l=lin(c))),
            Snippet(
                "map",
                lambda c: Fn(lambda s, h: h + torch.tanh(s.k(h)), k=nn.Conv2d(c, c, 1)),
                "map2",
            ),
        ],
        "product": [
            Snippet("gate", lambda c: Fn(lambda s, h: F.silu(s.a(h)) * s.b(h), a=lin(c), b=lin(c))),
            Snippet("self", lambda c: Fn(lambda s, h: h * h)),
            Snippet("vector", lambda c: Fn(lambda s, h: h * s.g, g=_p(c))),
            Snippet(
                "se",
                lambda c: Fn(
                    lambda s, h: h * torch.sigmoid(s.k(h.mean((2, 3), keepdim=True))),
                    k=nn.Conv2d(c, c, 1),
                ),
                "map2",
            ),
        ],
        "scale": [
            Snippet("0-dim", lambda c: Fn(lambda s, h: h * s.a, a=_p())),
            Snippet("1-elem", lambda c: Fn(lambda s, h: s.a * h, a=_p(1))),
            Snippet("div", lambda c: Fn(lambda s, h: h / s.a, a=_p(1, 1))),
            Snippet("const", lambda c: Fn(lambda s, h: 0.5 * h)),
            Snippet("spatial", lambda c: Fn(lambda s, h: h * s.m, m=_p(4, 4)), "map2"),
        ],
        "shift_const": [
            Snippet("const", lambda c: Fn(lambda s, h: h + 1.5)),
            Snippet("0-dim", lambda c: Fn(lambda s, h: h - s.a, a=_p())),
        ],
        "param_source": [Snippet("pos", lambda c: Fn(lambda s, h: h + s.pos, pos=_p(c)), "vec")],
        "concat": [
            Snippet(
                "branches",
                lambda c: Fn(lambda s, h: torch.cat([F.relu(h), torch.tanh(s.l(h))], -1), l=lin(c)),
            ),
            Snippet("self", lambda c: Fn(lambda s, h: torch.cat([h, h], -1))),
            Snippet("map", lambda c: Fn(lambda s, h: torch.cat([h, F.relu(h)], 1)), "map2"),
        ],
        "join": [
            Snippet("tokens", lambda c: Fn(lambda s, h: torch.cat([h, s.l(h)], 1), l=lin(c)), "seq")
        ],
        "relayout": [
            Snippet(
                "transpose", lambda c: Fn(lambda s, h: h.transpose(1, 2).transpose(1, 2)), "seq"
            ),
            Snippet(
                "flatten2", lambda c: Fn(lambda s, h: h.flatten(2).unflatten(2, (4, 4))), "map2"
            ),
            # rows picked by fixed data (advanced indexing of the other axes)
            Snippet(
                "pick_ids",
                lambda c: Fn(lambda s, h: h[:, s.idx], idx=torch.tensor([2, 0, 2, 1])),
                "seq",
            ),
            Snippet(
                "pick_mask",
                lambda c: Fn(lambda s, h: h[:, s.m, :], m=torch.tensor([True, False, True, True])),
                "seq",
            ),
            Snippet(
                "pick_rows",
                lambda c: Fn(lambda s, h: h[:, :, s.r], r=torch.tensor([3, 0, 1, 2])),
                "map2",
            ),
        ],
        "opaque": [Snippet("sum", lambda c: Fn(lambda s, h: h - h.sum(-1, keepdim=True)))],
        "flatten": [
            Snippet("flatten", lambda c: nn.Flatten(), "map2", "vec"),
            Snippet("view", lambda c: Fn(lambda s, h: h.reshape(h.shape[0], -1)), "map2", "vec"),
        ],
        "pool_avg": [
            Snippet("mean", lambda c: Fn(lambda s, h: h.mean((2, 3))), "map2", "vec"),
            Snippet("avg", lambda c: nn.AvgPool2d(2), "map2"),
        ],
        "pool_max": [
            Snippet("max", lambda c: nn.MaxPool2d(2), "map2"),
            Snippet("fmax", lambda c: Fn(lambda s, h: F.max_pool2d(h, 2)), "map2"),
        ],
        "softmax": [Snippet("softmax", lambda c: Fn(lambda s, h: s.l(h).softmax(-1), l=lin(c)))],
    }


def _new_ops() -> dict[str, list[Snippet]]:
    """Snippets for the everyday ops of issue 13's deliverable 4 (neg, abs, pow, clamp, ...)."""
    lin = lambda c, k=1: nn.Linear(c, k * c)  # noqa: E731
    rnn = lambda t, **kw: lambda c: Fn(lambda s, h: s.r(h)[0], r=t(c, c, batch_first=True, **kw))  # noqa: E731
    return {
        "clamp": [
            Snippet("clamp", lambda c: Fn(lambda s, h: torch.clamp(h, -1.0, 1.0))),
            Snippet("min0", lambda c: Fn(lambda s, h: h.clamp(min=0.0)), "map2"),
        ],
        "conv_transpose": [Snippet("up", lambda c: nn.ConvTranspose2d(c, c, 2, stride=2), "map2")],
        "glu": [Snippet("glu", lambda c: Fn(lambda s, h: F.glu(s.l(h), -1), l=lin(c, 2)))],
        "glu_gate": [Snippet("glu", lambda c: Fn(lambda s, h: F.glu(s.l(h), -1), l=lin(c, 2)))],
        "split_part": [
            Snippet(
                "geglu",
                lambda c: Fn(
                    lambda s, h: (lambda a, b: a * F.gelu(b))(*s.l(h).chunk(2, -1)), l=lin(c, 2)
                ),
            ),
            Snippet(
                "slices",
                lambda c: Fn(
                    lambda s, h: (lambda y: F.relu(y[..., :c]) + y[..., c:])(s.l(h)), l=lin(c, 2)
                ),
                "seq",
            ),
            Snippet(
                "chunk_channels",
                lambda c: Fn(
                    lambda s, h: (lambda a, b: torch.tanh(a) * b)(*s.l(h).chunk(2, 1)),
                    l=nn.Conv2d(c, 2 * c, 1),
                ),
                "map2",
            ),
            Snippet(
                "one_part_read",
                lambda c: Fn(lambda s, h: F.relu(s.l(h).split(c, -1)[1]), l=lin(c, 2)),
            ),
        ],
        "gru": [Snippet("gru", rnn(nn.GRU), "seq")],
        "lstm": [Snippet("lstm", rnn(nn.LSTM), "seq")],
        "rnn_tanh": [Snippet("rnn", rnn(nn.RNN), "seq")],
        "rnn_relu": [Snippet("rnn", rnn(nn.RNN, nonlinearity="relu"), "seq")],
        "maximum": [Snippet("max", lambda c: Fn(lambda s, h: torch.maximum(h, s.l(h)), l=lin(c)))],
        "norm": [Snippet("norm", lambda c: Fn(lambda s, h: h * h.norm(dim=-1, keepdim=True)))],
        "normalize": [Snippet("F", lambda c: Fn(lambda s, h: F.normalize(h, dim=-1)))],
        "pad": [Snippet("pad", lambda c: Fn(lambda s, h: F.pad(h, (1, 1, 1, 1))), "map2")],
        "pixel_shuffle": [
            Snippet(
                "ps",
                lambda c: Fn(lambda s, h: F.pixel_shuffle(s.k(h), 2), k=nn.Conv2d(c, 4 * c, 1)),
                "map2",
            )
        ],
        "pixel_unshuffle": [
            Snippet("pu", lambda c: Fn(lambda s, h: F.pixel_unshuffle(h, 2)), "map2")
        ],
        "pow": [
            Snippet("sq", lambda c: Fn(lambda s, h: h**2)),
            Snippet("cube", lambda c: Fn(lambda s, h: h.pow(3))),
        ],
        "prelu": [
            Snippet("per-channel", lambda c: nn.PReLU(c), "map2"),
            Snippet("scalar", lambda c: nn.PReLU()),
        ],
        "reduce_max": [Snippet("amax", lambda c: Fn(lambda s, h: h.amax(-1, keepdim=True) + h))],
    }


class _HandAttention(nn.Module):
    """Hand-written multi-head attention (separate or fused projections)."""

    def __init__(self, c: int, fused: bool) -> None:
        super().__init__()
        self.heads, self.fused = (2 if c % 2 == 0 else 1), fused
        if fused:
            self.qkv = nn.Linear(c, 3 * c)
        else:
            self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.o = nn.Linear(c, c)

    def split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        y = F.scaled_dot_product_attention(self.split(q), self.split(k), self.split(v))
        return self.o(y.transpose(1, 2).flatten(2))


class _MHA(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(c, 2 if c % 2 == 0 else 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, w = self.mha(x, x, x)
        return y + w.mean() * 0.0 + w[..., :1].sum() * 0.0


def _layers() -> dict[str, list[Snippet]]:
    return {
        "linear": [
            Snippet("linear", lambda c: nn.Linear(c, c)),
            Snippet("nobias", lambda c: nn.Linear(c, c, bias=False)),
            Snippet(
                "F.linear", lambda c: Fn(lambda s, h: F.linear(h, s.l.weight), l=nn.Linear(c, c))
            ),
        ],
        "conv": [
            Snippet(f"k{k}p{p}", lambda c, k=k, p=p: nn.Conv2d(c, c, k, padding=p), "map2")
            for k, p in ((1, 0), (3, 1), (2, 0), (3, 0))
        ],
        "dwconv": [Snippet("dw", lambda c: nn.Conv2d(c, c, 3, padding=1, groups=c), "map2")],
        "grouped_conv": [Snippet("g2", lambda c: nn.Conv2d(c, 2 * c, 1, groups=2), "map2")],
        "std_conv": [
            Snippet("std", lambda c: _std_conv(c, gain=False), "map2"),
            Snippet("scaled", lambda c: _std_conv(c, gain=True), "map2"),
        ],
        "batchnorm": [
            Snippet("bn1d", lambda c: nn.BatchNorm1d(c)),
            Snippet("bn2d", lambda c: nn.BatchNorm2d(c), "map2"),
            Snippet(
                "F.bn",
                lambda c: Fn(
                    lambda s, h: F.batch_norm(
                        h, s.n.running_mean, s.n.running_var, s.n.weight, s.n.bias
                    ),
                    n=nn.BatchNorm2d(c),
                ),
                "map2",
            ),
        ],
        "layernorm": [
            Snippet("ln", lambda c: nn.LayerNorm(c, eps=1e-12)),
            Snippet("ln-plain", lambda c: nn.LayerNorm(c, eps=1e-12, elementwise_affine=False)),
        ],
        "rmsnorm": [Snippet("rms", lambda c: nn.RMSNorm(c, eps=1e-6))],
        "groupnorm": [Snippet("gn", lambda c: nn.GroupNorm(1, c, eps=1e-12), "map2")],
        "dropout": [Snippet("drop", lambda c: nn.Dropout(0.3))],
        "embedding": [Snippet("emb", lambda c: _Embed(c), "vec")],
        "figlu": [Snippet("figlu", lambda c: FiGLU(c))],
        "figlu2d": [Snippet("figlu2d", lambda c: FiGLU2d(c), "map2")],
        "wasym_linear": [
            Snippet("k1", lambda c: WAsymLinear(c, c, num_fixed=1, kappa=1.0)),
            Snippet("k0", lambda c: WAsymLinear(c, c, num_fixed=1, kappa=0.0)),
        ],
        "wasym_conv": [
            Snippet("wc", lambda c: WAsymConv2d(c, c, 1, num_fixed=1, kappa=0.0), "map2")
        ],
        "attention_linear": [Snippet("hand", lambda c: _HandAttention(c, False), "seq")],
        "attention_fused": [Snippet("fused", lambda c: _HandAttention(c, True), "seq")],
        "mha": [Snippet("mha", lambda c: _MHA(c), "seq")],
        "invariant": [Snippet("weights", lambda c: _MHA(c), "seq")],
        "input": [Snippet("any", lambda c: nn.Identity())],
        "output": [Snippet("any", lambda c: nn.Identity())],
    }


class _Embed(nn.Module):
    """An embedding looked up by fixed indices (one per sample), added to the stream."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, c)
        self.register_buffer("idx", torch.arange(KINDS["vec"][0]) % 5)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.emb(self.idx)


def _std_conv(c: int, gain: bool) -> nn.Module:
    class StdConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = F.batch_norm(
                self.weight.reshape(1, self.out_channels, -1),
                None,
                None,
                weight=(self.gain * 0.5).view(-1) if gain else None,
                training=True,
                momentum=0.0,
                eps=1e-6,
            ).reshape_as(self.weight)
            return F.conv2d(x, w, self.bias, self.stride, self.padding)

    conv = StdConv(c, c, 3, padding=1)
    if gain:
        conv.gain = nn.Parameter(torch.rand(c, 1, 1, 1) + 0.5)
    return conv


OP_SNIPPETS["activation"] = _acts()
for _op, _s in {**_binary(), **_layers(), **_new_ops()}.items():
    register_snippets(_op, _s)


def _module_factories() -> None:
    from symlab.frontend.modules import _MODULE_OPS

    dims = {"1": "map1", "2": "map2", "3": "map3"}
    sized = {
        nn.Linear: lambda c, k: nn.Linear(c, c),
        nn.Embedding: lambda c, k: nn.Embedding(4, c),
        nn.LayerNorm: lambda c, k: nn.LayerNorm(c, eps=1e-12),
        nn.RMSNorm: lambda c, k: nn.RMSNorm(c, eps=1e-12),
        nn.GroupNorm: lambda c, k: nn.GroupNorm(1, c, eps=1e-12),
        FiGLU: lambda c, k: FiGLU(c),
        FiGLU2d: lambda c, k: FiGLU2d(c),
        nn.Unflatten: lambda c, k: nn.Unflatten(1, (c, 1)),
        WAsymLinear: lambda c, k: WAsymLinear(c, c, num_fixed=1),
        WAsymConv2d: lambda c, k: WAsymConv2d(c, c, 1, num_fixed=1),
        nn.Softmax: lambda c, k: nn.Softmax(-1),
        nn.LogSoftmax: lambda c, k: nn.LogSoftmax(1),
        nn.Upsample: lambda c, k: nn.Upsample(scale_factor=2),
        nn.UpsamplingNearest2d: lambda c, k: nn.UpsamplingNearest2d(scale_factor=2),
        nn.UpsamplingBilinear2d: lambda c, k: nn.UpsamplingBilinear2d(scale_factor=2),
        nn.Flatten: lambda c, k: nn.Flatten(),
    }
    for t in list(_MODULE_OPS):
        name = t.__name__
        if t in sized:
            register_module_factory(t, sized[t])
        elif name.startswith(("Conv", "BatchNorm", "InstanceNorm")):
            register_module_factory(t, lambda c, k, t=t: _channel_module(t, c))
        elif "Pool" in name or "Pad" in name:
            arg = 1 if "Adaptive" in name else 2 if "Pool" in name else 1
            register_module_factory(t, lambda c, k, t=t, a=arg: t(a))
        else:
            register_module_factory(t, lambda c, k, t=t: t())
    del dims


def _channel_module(t: type[nn.Module], c: int) -> nn.Module:
    if t.__name__.startswith("Conv"):
        return t(c, c, 1)
    return t(c, affine=True) if t.__name__.startswith("Instance") else t(c)


_module_factories()
