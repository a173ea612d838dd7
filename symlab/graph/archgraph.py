"""ArchGraph: the architecture as a networkx graph of ops with explicit feature axes.

Each node is one op (``input``, ``linear``, ``activation``, ``layernorm``, ``add``, …). A node
produces one tensor whose *feature axis* has a width (an int or a sympy expression). Parameters
and buffers are declared per node with the feature axis each of their dimensions runs along, and
are named like the torch ``state_dict`` keys (``f"{node}.{param}"``). Edges carry a ``port`` so
that ops whose input order matters (concatenation) keep it. Nothing here knows about groups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from symlab.errors import GraphError
from symlab.graph.widths import Width, check_width, is_concrete
from symlab.perf import lazy_import

nx = lazy_import("networkx")  # loaded on first use: ``import symlab`` stays cheap
sp = lazy_import("sympy")

__all__ = ["ArchGraph", "Node", "ParamSpec", "register_builder"]

#: How :meth:`ArchGraph.build` makes a torch module; set by :mod:`symlab.nn.graphnet` (the IR
#: knows nothing of the modules built from it).
_BUILDER: list[Callable[..., Any]] = []


def register_builder(builder: Callable[..., Any]) -> None:
    """Make ``builder(graph, seed=..., dtype=...)`` the module factory of
    :meth:`ArchGraph.build` (symlab.nn registers :class:`~symlab.nn.GraphNet` on import).

    >>> import symlab as sl
    >>> _BUILDER[0] is sl.nn.GraphNet
    True
    """
    _BUILDER[:] = [builder]


#: ``"in"``: the feature axis of the node's input (port 0); ``"out"``: of its output;
#: ``"none"``: an axis no symmetry touches (e.g. a fixed spatial or scalar axis).
AxisRole = Literal["in", "out", "none"]
ParamKind = Literal["param", "buffer", "fixed"]


@dataclass(frozen=True)
class ParamSpec:
    """A parameter or buffer of a node.

    ``axes`` gives, per dimension, which feature axis it runs along. ``kind`` is ``"param"``
    (trainable, moved by symmetries), ``"buffer"`` (moved with its channel, e.g. running
    statistics) or ``"fixed"`` (fixed data such as asymmetric masks: never moved; it is what
    can make units distinguishable).

    >>> import symlab as sl
    >>> node = sl.symmetries(sl.nn.MLP([3, 4, 2])).graph.node("layers.0.linear")
    >>> spec = node.param("weight")
    >>> spec.shape, spec.axes, spec.kind, node.key(spec)
    ((4, 3), ('out', 'in'), 'param', 'layers.0.linear.weight')
    """

    name: str
    shape: tuple[Width, ...]
    axes: tuple[AxisRole, ...]
    kind: ParamKind = "param"

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.axes):
            raise GraphError(f"parameter {self.name}: shape {self.shape} vs axes {self.axes}")


@dataclass(frozen=True)
class Node:
    """One op of the graph: its name (the module path), op type, output width and parameters.

    >>> import symlab as sl
    >>> graph = sl.symmetries(sl.nn.MLP([3, 4, 2])).graph
    >>> [(node.name, node.op, node.width) for node in graph.nodes()][1:3]
    [('layers.0.linear', 'linear', 4), ('layers.0.act', 'activation', 4)]
    >>> [p.name for p in graph.node("layers.0.linear").params]
    ['weight', 'bias']
    """

    name: str
    op: str
    width: Width
    params: tuple[ParamSpec, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def key(self, p: ParamSpec) -> str:
        """The ``state_dict`` key of parameter ``p`` (``"{node}.{param}"``; for nodes with
        ``attrs['absolute_keys']`` the parameter name is the whole key; ``attrs['param_keys']``
        maps parameter names to keys, for functional ops reading a module's tensors;
        ``attrs['key_prefix']`` replaces the node name, for a second call of a module or an op
        read from code)."""
        keys = self.attrs.get("param_keys")
        if keys and p.name in keys:
            return str(keys[p.name])
        if self.attrs.get("absolute_keys"):
            return p.name
        return f"{self.attrs.get('key_prefix', self.name)}.{p.name}"

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called ``name``, or None."""
        return next((p for p in self.params if p.name == name), None)


class ArchGraph:
    """A directed acyclic graph of ops (networkx-backed); see the module docstring.

    >>> g = ArchGraph()
    >>> _ = g.add("input", "input", width=3)
    >>> _ = g.add("fc", "linear", ["input"], width=2, bias=True)
    >>> _ = g.add("output", "output", ["fc"])
    >>> g.validate(); [n.name for n in g.nodes()]
    ['input', 'fc', 'output']
    """

    def __init__(self) -> None:
        self.nx = nx.DiGraph()
        self._topo: tuple[tuple[int, int], list[str]] | None = None
        self._in_cache: tuple[tuple[int, int], dict[str, list[str]]] | None = None
        self._version = 0
        #: which front-end produced the graph: "builder", "nn.Sequential" or "torch.fx"
        self.frontend = "builder"
        #: ``state_dict`` keys of a traced model that its forward never reads (unused modules):
        #: accepted by the group's actions and passed through unchanged
        self.unused_keys: tuple[str, ...] = ()
        #: groups of ``state_dict`` keys that are one tensor (tied weights, e.g. a language
        #: model's embedding and output layer); their axes must move identically, and a key no
        #: node reads (T5's ``shared.weight``) gets the moved tensor of the key that is read
        self.tied_keys: tuple[tuple[str, ...], ...] = ()

    def _stamp(self) -> tuple[int, int]:
        return (self.nx.number_of_nodes(), self._version)

    def touch(self) -> None:
        """Drop cached orderings; call after editing :attr:`nx` directly."""
        self._version += 1

    def connect(self, src: str, dst: str, port: int | None = None) -> None:
        """Add an edge ``src → dst`` (next free port by default); checked by :meth:`validate`."""
        for n in (src, dst):
            if n not in self.nx:
                raise GraphError(f"no node named {n!r}")
        if port is None:
            port = self.nx.in_degree(dst)
        self.nx.add_edge(src, dst, port=port)
        self.touch()

    # -- construction -------------------------------------------------------------------------
    def add(
        self,
        name: str,
        op: str,
        inputs: Iterable[str] = (),
        *,
        width: Width | None = None,
        params: Iterable[ParamSpec] | None = None,
        **attrs: Any,
    ) -> Node:
        """Add a node fed by ``inputs`` (in port order) and return it.

        ``width`` defaults to the first input's width. For ``linear`` nodes the weight and bias
        specs are filled in from ``attrs['bias']`` when ``params`` is not given.
        """
        if name in self.nx:
            raise GraphError(f"duplicate node name {name!r}")
        inputs = list(inputs)
        for src in inputs:
            if src not in self.nx:
                raise GraphError(f"node {name!r} reads from unknown node {src!r}; add it first")
        if width is None:
            if not inputs:
                raise GraphError(f"node {name!r} has no inputs, so it needs an explicit width")
            width = self.node(inputs[0]).width
        width = check_width(width, f"width of node {name!r}")
        if op == "add" and any(self.node(s).width != width for s in inputs):
            ws = {s: self.node(s).width for s in inputs}
            raise GraphError(f"add node {name!r} sums tensors of different widths {ws}")
        if params is None:
            params = default_params(op, width, [self.node(s).width for s in inputs], attrs)
        node = Node(name, op, width, tuple(params), dict(attrs))
        self.nx.add_node(name, node=node)
        for port, src in enumerate(inputs):
            self.nx.add_edge(src, name, port=port)
        self.touch()
        return node

    # -- queries ------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The node called ``name``."""
        try:
            return self.nx.nodes[name]["node"]
        except KeyError:
            raise GraphError(f"no node named {name!r}") from None

    def nodes(self) -> Iterator[Node]:
        """Nodes in a deterministic topological order (insertion order where free)."""
        stamp = self._stamp()
        if self._topo is None or self._topo[0] != stamp:
            if not nx.is_directed_acyclic_graph(self.nx):
                cycle = nx.find_cycle(self.nx)
                raise GraphError(f"the graph has a cycle: {' -> '.join(u for u, _ in cycle)}")
            self._topo = (stamp, list(nx.topological_sort(self.nx)))
        data = self.nx.nodes
        for name in self._topo[1]:
            yield data[name]["node"]

    def inputs(self, name: str) -> list[str]:
        """Names of the nodes feeding ``name``, in port order."""
        stamp = self._stamp()
        if self._in_cache is None or self._in_cache[0] != stamp:
            table: dict[str, list[tuple[int, str]]] = {n: [] for n in self.nx.nodes}
            for src, dst, port in self.nx.edges(data="port"):
                table[dst].append((port, src))
            self._in_cache = (stamp, {n: [s for _, s in sorted(v)] for n, v in table.items()})
        return list(self._in_cache[1][name])

    def consumers(self, name: str) -> list[str]:
        """Names of the nodes reading ``name``."""
        return list(self.nx.successors(name))

    @property
    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes() if n.op == "input"]

    @property
    def output_nodes(self) -> list[Node]:
        return [n for n in self.nodes() if n.op == "output"]

    def state_keys(self) -> dict[str, tuple[Node, ParamSpec]]:
        """Every ``state_dict`` key the graph declares, mapped to its node and spec."""
        return {n.key(p): (n, p) for n in self.nodes() for p in n.params}

    @property
    def is_concrete(self) -> bool:
        """True when every width is an integer (so modules can be built)."""
        return all(is_concrete(n.width) for n in self.nodes())

    @property
    def free_symbols(self) -> set[sp.Symbol]:
        syms: set[sp.Symbol] = set()
        for n in self.nodes():
            if isinstance(n.width, sp.Expr):
                syms |= n.width.free_symbols
        return syms

    # -- checks and transforms ----------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`GraphError` for a cycle, a dangling node or a malformed op."""
        if not self.input_nodes or not self.output_nodes:
            raise GraphError("the graph needs at least one 'input' and one 'output' node")
        for n in self.nodes():
            ins, outs = self.inputs(n.name), self.consumers(n.name)
            if n.op == "input" and ins:
                raise GraphError(f"input node {n.name!r} must not have inputs")
            if n.op not in ("input", "param_source") and not ins:
                raise GraphError(f"node {n.name!r} ({n.op}) has no inputs: it dangles")
            if n.op != "output" and not outs:
                raise GraphError(
                    f"node {n.name!r} ({n.op}) feeds nothing: it dangles; connect it or "
                    "mark it as an 'output'"
                )
            if n.op == "output" and outs:
                raise GraphError(f"output node {n.name!r} must not feed other nodes")

    def subs(self, values: Mapping[sp.Symbol | str, int]) -> ArchGraph:
        """A copy with symbolic widths replaced by integers (``{n: 64}`` or ``{"n": 64}``)."""
        by_name = {str(k): v for k, v in values.items()}
        mapping = {s: by_name[str(s)] for s in self.free_symbols if str(s) in by_name}

        def sub(w: Width) -> Width:
            return check_width(w.subs(mapping) if isinstance(w, sp.Expr) else w)

        out = ArchGraph()
        for n in self.nodes():
            params = tuple(
                ParamSpec(p.name, tuple(sub(s) for s in p.shape), p.axes, p.kind) for p in n.params
            )
            out.add(n.name, n.op, self.inputs(n.name), width=sub(n.width), params=params, **n.attrs)
        return out

    def build(self, seed: int = 0, dtype: Any = None) -> Any:
        """A torch module computing this graph, initialised from ``seed`` (needs integer widths):
        a :class:`symlab.nn.GraphNet`."""
        if not _BUILDER:
            raise GraphError("no module builder is registered: import symlab.nn first")
        return _BUILDER[0](self, seed=seed, dtype=dtype)

    def __len__(self) -> int:
        return self.nx.number_of_nodes()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchGraph):
            return NotImplemented
        mine, theirs = list(self.nodes()), list(other.nodes())
        return mine == theirs and all(
            self.inputs(a.name) == other.inputs(b.name) for a, b in zip(mine, theirs, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        lines = [f"ArchGraph({len(self)} nodes)"]
        for n in self.nodes():
            ins = ", ".join(self.inputs(n.name))
            lines.append(f"  {n.name}: {n.op}[{n.width}]({ins})")
        return "\n".join(lines)


def default_params(
    op: str, width: Width, in_widths: list[Width], attrs: Mapping[str, Any]
) -> tuple[ParamSpec, ...]:
    """Parameter specs implied by a standard op and its attributes."""
    n_in = in_widths[0] if in_widths else None
    bias = [ParamSpec("bias", (width,), ("out",))] if attrs.get("bias", True) else []
    if op in ("linear", "wasym_linear"):
        specs = [ParamSpec("weight", (width, n_in), ("out", "in")), *bias]
        if op == "wasym_linear":
            specs += [
                ParamSpec("mask", (width, n_in), ("out", "in"), "fixed"),
                ParamSpec("fixed", (width, n_in), ("out", "in"), "fixed"),
            ]
        return tuple(specs)
    if op in ("conv", "dwconv", "grouped_conv", "wasym_conv"):
        kernel = tuple(attrs["kernel"])
        groups = int(attrs.get("groups", 1))
        fan_in = n_in // groups if isinstance(n_in, int) else n_in
        in_role: AxisRole = "in" if op in ("conv", "wasym_conv") else "none"
        roles: tuple[AxisRole, ...] = ("out", in_role) + ("none",) * len(kernel)
        specs = [ParamSpec("weight", (width, fan_in, *kernel), roles), *bias]
        if op == "wasym_conv":
            specs += [
                ParamSpec("mask", specs[0].shape, roles, "fixed"),
                ParamSpec("fixed", specs[0].shape, roles, "fixed"),
            ]
        if op == "grouped_conv":  # moved by nothing: its spaces are fixed
            specs = [ParamSpec(p.name, p.shape, ("none",) * len(p.shape)) for p in specs]
        return tuple(specs)
    if op == "embedding":
        return (ParamSpec("weight", (attrs["num_embeddings"], width), ("none", "out")),)
    if op in ("layernorm", "batchnorm", "groupnorm", "rmsnorm"):
        specs = []
        if attrs.get("affine", True):
            specs = [ParamSpec("weight", (width,), ("out",)), *bias]
        if op == "batchnorm" and attrs.get("track_running_stats", True):
            specs += [
                ParamSpec("running_mean", (width,), ("in",), "buffer"),
                ParamSpec("running_var", (width,), ("in",), "buffer"),
                ParamSpec("num_batches_tracked", (), (), "buffer"),
            ]
        return tuple(specs)
    if op in ("figlu", "figlu2d"):
        return (ParamSpec("gate", (width, width), ("in", "in"), "fixed"),)
    return ()
