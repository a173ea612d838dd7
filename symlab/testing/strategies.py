"""Hypothesis strategies: architectures, models and group elements, for your own property tests.

>>> from hypothesis import given, settings
>>> from symlab.testing import strategies as sst
>>> @settings(max_examples=5, derandomize=True, deadline=None)
... @given(sst.models(max_width=4))
... def test_sound(model):
...     import symlab as sl, torch
...     x = torch.randn(8, model.graph.input_nodes[0].width, dtype=torch.float64)
...     assert sl.check_invariance(model, sl.symmetries(model), x).passed
>>> test_sound()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import strategies as st

from symlab.graph.archgraph import ArchGraph
from symlab.graph.builders import mlp
from symlab.nn.graphnet import GraphNet
from symlab.seeding import generator
from symlab.symmetry.factors import GroupElement
from symlab.symmetry.group import SymmetryGroup
from symlab.testing.traced import cnn_models, transformer_models

__all__ = [
    "ACTIVATIONS",
    "MLPConfig",
    "architectures",
    "cnn_models",
    "group_elements",
    "mlp_configs",
    "models",
    "randomize",
    "transformer_models",
]

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "identity", "figlu",
               "softsign", "hardtanh", "relu6", "selu")  # fmt: skip
NORMS = (None, "layernorm", "batchnorm")


@dataclass(frozen=True)
class MLPConfig:
    """A drawn MLP architecture; ``graph()`` builds it, ``family`` names its kind.

    >>> cfg = MLPConfig(widths=(3, 4, 2), activation="tanh", norm="layernorm")
    >>> cfg.family, [n.op for n in cfg.graph().nodes()][:3]
    ('tanh/layernorm/plain/bias/std', ['input', 'linear', 'layernorm'])
    """

    widths: tuple[int, ...]
    activation: str
    norm: str | None = None
    residual: bool = False
    bias: bool = True
    asym: dict[str, Any] | None = field(default=None, hash=False)
    norm_eps: float = 1e-12

    def graph(self) -> ArchGraph:
        return mlp(
            list(self.widths),
            self.activation,
            norm=self.norm,
            residual=self.residual,
            bias=self.bias,
            asym=self.asym,
            norm_eps=self.norm_eps,
        )

    @property
    def family(self) -> str:
        parts = [self.activation, self.norm or "nonorm", "res" if self.residual else "plain"]
        parts += ["bias" if self.bias else "nobias", "asym" if self.asym else "std"]
        return "/".join(parts)


@st.composite
def mlp_configs(
    draw: st.DrawFn,
    *,
    max_hidden: int = 3,
    max_width: int = 6,
    activations: Sequence[str] = ACTIVATIONS,
    norms: Sequence[str | None] = NORMS,
    residual: bool | None = None,
    asym: bool | None = None,
) -> MLPConfig:
    """Random MLP architectures over activations × norms × residual × bias × asymmetric.

    ``residual``/``asym``: True or False forces the choice; None lets hypothesis pick.
    Hidden layers share one width when residual, so the skips apply.

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, deadline=None, database=None)
    ... @given(mlp_configs(max_hidden=2, residual=True))
    ... def check(cfg):
    ...     assert cfg.residual and len(set(cfg.widths[1:-1])) == 1
    >>> check()
    """
    n_hidden = draw(st.integers(1, max_hidden))
    res = draw(st.booleans()) if residual is None else residual
    norm = draw(st.sampled_from(list(norms)))
    # LayerNorm over 2 units is binary (±(1, −1)), and on an input whose two units nearly
    # coincide its scale invariance fails by design (variance near eps): 3 units at least
    low = min(3 if norm == "layernorm" else 2, max_width)
    if res:
        w = draw(st.integers(low, max_width))
        hidden = [w] * n_hidden
    else:
        hidden = [draw(st.integers(low, max_width)) for _ in range(n_hidden)]
    widths = (draw(st.integers(2, 5)), *hidden, draw(st.integers(1, 3)))
    act = draw(st.sampled_from(list(activations)))
    use_asym = draw(st.booleans()) if asym is None else asym
    asym_cfg = None
    if use_asym:
        kappa = draw(st.sampled_from([0.0, 1.0]))
        nf = [draw(st.integers(1, max(1, w - 1))) for w in widths[:-1]]
        asym_cfg = {"num_fixed": nf, "kappa": kappa}
    return MLPConfig(widths, act, norm, res, draw(st.booleans()), asym_cfg)


def architectures(**kwargs: Any) -> st.SearchStrategy[ArchGraph]:
    """Random MLP graphs (see :func:`mlp_configs` for the options).

    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, deadline=None, database=None)
    ... @given(architectures(max_hidden=1, norms=[None]))
    ... def check(graph):
    ...     assert [n.op for n in graph.input_nodes] == ["input"]
    >>> check()
    """
    return mlp_configs(**kwargs).map(lambda c: c.graph())


def randomize(model: GraphNet, seed: int, batch: int = 64) -> GraphNet:
    """Give every trainable tensor generic N(0, 1) values (fixed data untouched) and, for
    BatchNorm models, non-trivial running statistics; returns the model in eval mode.

    >>> import symlab as sl
    >>> net = randomize(sl.nn.MLP([3, 4, 2], norm="batchnorm", dtype=torch.float64), seed=0)
    >>> net.training, bool((net.state_dict()["layers.0.norm.running_mean"] != 0).any())
    (False, True)
    """
    g = generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        for module in model.modules():
            if hasattr(module, "mask") and hasattr(module, "weight"):
                module.weight.mul_(module.mask)
        if any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()):
            model.train()
            d = int(model.graph.input_nodes[0].width)
            dt = next(model.parameters()).dtype
            for _ in range(3):
                model(torch.randn(batch, d, generator=g, dtype=dt) * 2 + 0.5)
    return model.eval()


@st.composite
def models(draw: st.DrawFn, dtype: torch.dtype = torch.float64, **kwargs: Any) -> GraphNet:
    """Built, generically initialised models of :func:`mlp_configs` architectures.

    The drawn config is available as ``model.config``.

    >>> import symlab as sl
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=3, deadline=None, database=None)
    ... @given(models(max_hidden=1, max_width=4))
    ... def check(net):  # every drawn model passes its own invariance check
    ...     G = sl.symmetries(net)
    ...     x = torch.randn(8, net.config.widths[0], dtype=torch.float64)
    ...     assert sl.check_invariance(net, G, x).passed
    >>> check()
    """
    cfg = draw(mlp_configs(**kwargs))
    seed = draw(st.integers(0, 2**16))
    model = randomize(GraphNet(cfg.graph(), seed=seed, dtype=dtype), seed)
    model.config = cfg  # type: ignore[attr-defined]
    return model


@st.composite
def group_elements(draw: st.DrawFn, group: SymmetryGroup) -> GroupElement:
    """Random elements of ``group`` (seeded from hypothesis, so failures shrink and replay).

    >>> import symlab as sl
    >>> from hypothesis import given, settings
    >>> G = sl.symmetries(sl.nn.MLP([3, 4, 2]))
    >>> @settings(max_examples=5, deadline=None, database=None)
    ... @given(group_elements(G))
    ... def check(h):
    ...     assert sorted(h.values["P[layers.0.linear]"].tolist()) == [0, 1, 2, 3]
    >>> check()
    """
    return group.sample(draw(st.integers(0, 2**32 - 1)))
