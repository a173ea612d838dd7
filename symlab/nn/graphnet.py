"""GraphNet: a torch module that runs an :class:`~symlab.graph.ArchGraph`.

Submodules sit at the node names (dotted paths), so ``state_dict`` keys are exactly the graph's
``f"{node}.{param}"`` names. Construction is seeded and leaves torch's global RNG untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from symlab.errors import GraphError, UnsupportedOpError, WidthError
from symlab.graph.archgraph import ArchGraph, Node, register_builder
from symlab.nn.activations import activation_module
from symlab.nn.asymmetric import FiGLU, WAsymLinear
from symlab.seeding import child_seed

__all__ = ["MODULE_BUILDERS", "GraphNet"]

ModuleBuilder = Callable[[Node, list[Any]], nn.Module]


def _linear(n: Node, w_in: list[Any]) -> nn.Module:
    return nn.Linear(w_in[0], n.width, bias=n.attrs.get("bias", True))


def _wasym(n: Node, w_in: list[Any]) -> nn.Module:
    return WAsymLinear(
        w_in[0],
        n.width,
        num_fixed=n.attrs["num_fixed"],
        kappa=n.attrs.get("kappa", 1.0),
        bias=n.attrs.get("bias", True),
        seed=n.attrs.get("mask_seed", 0),
        shared_mask=n.attrs.get("shared_mask", False),
        syre=n.attrs.get("syre", 0.0),
    )


def _layernorm(n: Node, w_in: list[Any]) -> nn.Module:
    return nn.LayerNorm(
        n.width,
        eps=n.attrs.get("eps", 1e-5),
        elementwise_affine=n.attrs.get("affine", True),
        bias=n.attrs.get("bias", True),
    )


def _batchnorm(n: Node, w_in: list[Any]) -> nn.Module:
    return nn.BatchNorm1d(
        n.width,
        eps=n.attrs.get("eps", 1e-5),
        momentum=n.attrs.get("momentum", 0.1),
        affine=n.attrs.get("affine", True),
        track_running_stats=n.attrs.get("track_running_stats", True),
    )


#: op -> builder of the node's torch module (ops without parameters may be absent).
MODULE_BUILDERS: dict[str, ModuleBuilder] = {
    "linear": _linear,
    "wasym_linear": _wasym,
    "activation": lambda n, w: activation_module(n),
    "figlu": lambda n, w: FiGLU(n.width, seed=n.attrs.get("gate_seed", 0)),
    "layernorm": _layernorm,
    "batchnorm": _batchnorm,
    "dropout": lambda n, w: nn.Dropout(n.attrs.get("p", 0.5)),
}

_FUNCTIONAL = {"input", "output", "add", "concat", "flatten"}


class GraphNet(nn.Module):
    """Runs ``graph``; ``forward(*inputs)`` takes one tensor per input node, in graph order.

    >>> from symlab.graph import mlp
    >>> net = mlp([3, 5, 2]).build(seed=0)
    >>> tuple(net(torch.zeros(4, 3)).shape)
    (4, 2)
    """

    def __init__(self, graph: ArchGraph, seed: int = 0, dtype: Any = None) -> None:
        super().__init__()
        graph.validate()
        if not graph.is_concrete:
            raise WidthError(
                f"cannot build a module with symbolic widths {sorted(map(str, graph.free_symbols))}"
                "; substitute integers first with graph.subs({...})"
            )
        self.graph = graph
        self._order = list(graph.nodes())
        self._inputs = {n.name: graph.inputs(n.name) for n in self._order}
        with torch.random.fork_rng(devices=[]):
            for i, node in enumerate(self._order):
                if node.op in _FUNCTIONAL:
                    continue
                builder = MODULE_BUILDERS.get(node.op)
                if builder is None:
                    raise UnsupportedOpError(
                        f"node {node.name!r}: no torch module is registered for op {node.op!r}; "
                        "add one to symlab.nn.graphnet.MODULE_BUILDERS"
                    )
                torch.manual_seed(child_seed(seed, i))
                in_widths = [graph.node(s).width for s in self._inputs[node.name]]
                self._place(node.name, builder(node, in_widths))
        self._mods = {
            n.name: self.get_submodule(n.name) for n in self._order if n.op not in _FUNCTIONAL
        }
        if dtype is not None:
            self.to(dtype)

    def _place(self, path: str, module: nn.Module) -> None:
        *parents, leaf = path.split(".")
        owner: nn.Module = self
        for part in parents:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
            if not isinstance(owner, nn.Module):
                raise GraphError(f"node name {path!r} clashes with an attribute {part!r}")
        owner.add_module(leaf, module)

    def path(self) -> list[tuple[str, str, nn.Module | None]] | None:
        """``(node name, op, module)`` of every node in run order when the nodes form one path
        (one input, each node read by the next one only, the last one the output), else None.

        >>> from symlab.graph import mlp
        >>> [op for _, op, _ in mlp([3, 5, 2]).build().path()]
        ['input', 'linear', 'activation', 'linear', 'output']
        >>> mlp([3, 5, 5, 2], residual=True).build().path() is None
        True
        """
        names = [n.name for n in self._order]
        for i, name in enumerate(names):
            if self._inputs[name] != names[i - 1 : i]:  # the input node has none
                return None
        ends = [n.op for n in self._order if n.op in ("input", "output")]
        if ends != ["input", "output"] or self._order[-1].op != "output":
            return None
        return [(n.name, n.op, self._mods.get(n.name)) for n in self._order]

    def forward(self, *xs: torch.Tensor) -> Any:
        values = self.forward_all(*xs)
        outputs = [values[n.name] for n in self._order if n.op == "output"]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def forward_all(self, *xs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output, by node name (for activation statistics and matching)."""
        values: dict[str, torch.Tensor] = {}
        inputs = [n for n in self._order if n.op == "input"]
        if len(xs) != len(inputs):
            raise GraphError(f"expected {len(inputs)} input tensor(s), got {len(xs)}")
        for node in self._order:
            args = [values[s] for s in self._inputs[node.name]]
            if node.op == "input":
                out = xs[inputs.index(node)]
            elif node.op == "output":
                out = args[0]
            elif node.op == "add":
                out = args[0]
                for a in args[1:]:
                    out = out + a
            elif node.op == "concat":
                out = torch.cat(args, dim=-1)
            elif node.op == "flatten":
                out = args[0].flatten(1)
            else:
                out = self._mods[node.name](*args)
            values[node.name] = out
        return values


register_builder(GraphNet)
