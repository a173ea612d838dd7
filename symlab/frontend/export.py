"""The torch.export fallback: an exported graph rewritten as a torch-level torch.fx graph.

torch.fx traces with symbolic sizes, so Python code on sizes (``assert t <= self.block_size``,
``if x.shape[-1] > 8:``, ``float(x.size(-1))``) stops it. When it does,
:func:`export_graph` runs ``torch.export.export(model, inputs, strict=False)`` (eval mode,
no gradients): sizes are then the numbers of the example input and such code simply runs. The
exported aten-level graph is rewritten into an ``fx.Graph`` over the *original* model, so that
the rest of the torch.fx front-end (shape propagation, the converter, the attention matcher,
the ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` macros) reads it unchanged:

* the ops of one call of a module symlab treats as a leaf (the tracer's own test: registered
  module ops, macros, declared leaves, torch.nn modules) collapse into one ``call_module`` node
  with the arguments of that call (:mod:`symlab.frontend.export_calls`); a tuple it returns is
  read with ``getitem`` (attention's ``(out, weights)``);
* parameters and buffers read outside leaf modules become ``get_attr`` nodes (``x + self.pos``);
* every other aten op becomes the torch function or tensor method of
  :data:`symlab.frontend.export_aten.ATEN` (or stays itself when registered with
  ``register_function``); tensors computed from constants alone (``torch.triu(torch.ones(t,
  t))``) become constants, as torch.fx computes them while tracing; in-place ops are read out
  of place when nothing else sees the write; ops on tensors no parameter reaches (masks, ids,
  positions: :mod:`symlab.frontend.units`) stay aten ops, which the converter reads as fixed
  data; any other op is refused with :class:`~symlab.errors.UnsupportedOpError`;
* a new tensor written part by part into its slices (``k = x.new_empty(...)``,
  ``k[..., :d].copy_(a)``, ``k[..., d:] = b``) is read as the ``torch.cat`` of the parts when
  the writes cover it exactly (:mod:`symlab.frontend.assembled`);
* a ``with torch.autocast(..., enabled=False)`` block, which torch.export keeps as a
  higher-order op with its own sub-graph, is read as its ops while autocast is off around it
  too (then it changes nothing); any other higher-order op is refused by name.

Data-dependent control flow (an ``if`` on tensor *values*) stops both front-ends; the
:class:`~symlab.errors.TraceError` then says so with both reasons.
"""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.fx as fx
import torch.fx.config
from torch import nn
from torch.export._tree_utils import reorder_kwargs
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

from symlab.errors import TraceError, UnsupportedOpError
from symlab.frontend.aliases import may_alias, read_before, writes_in_place
from symlab.frontend.assembled import assemble_export, written_in_parts
from symlab.frontend.export_aten import ATEN, FIRST_OF_PAIR, rewrite
from symlab.frontend.export_calls import Calls, Group, LeafCalls, recording_calls
from symlab.frontend.functions import USER_FUNCS
from symlab.frontend.fxutil import flat_nodes, where
from symlab.frontend.inputs import ExampleInputs
from symlab.frontend.scattered import scatter_export
from symlab.frontend.units import reachable
from symlab.modes import eval_mode

__all__ = ["export_graph"]

_LITERALS = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format)


def export_graph(
    model: nn.Module,
    inputs: ExampleInputs | tuple[Any, ...],
    fx_error: Exception,
    stack_traces: bool = False,
) -> tuple[fx.Graph, list[Any]]:
    """The torch-level ``fx.Graph`` of ``model`` on ``inputs`` (positional and keyword), through
    ``torch.export``, and the values of its placeholders (the inputs, flattened).

    ``fx_error`` is why torch.fx failed; when export fails too, the :class:`TraceError` gives
    both reasons. ``stack_traces`` keeps each node's source line (for error messages; a quarter
    of export's time, so off unless asked for).

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         assert x.shape[-1] == 3  # stops torch.fx, not torch.export
    ...         return torch.relu(self.fc(x))
    >>> g, flat = export_graph(Net(), (torch.randn(4, 3),), fx_error=RuntimeError("fx failed"))
    >>> [(n.op, n.target) for n in g.nodes][1]
    ('call_module', 'fc')
    >>> [n for n in g.nodes][2].target is torch.relu
    True
    """
    inputs = ExampleInputs.of(inputs)
    with eval_mode(model), torch.no_grad():
        try:
            with (
                contextlib.redirect_stderr(io.StringIO()),  # export prints partial graphs
                _stack_traces(stack_traces),
                _lazy_graph_modules(),  # export's passes regenerate no Python code for symlab
                recording_calls(model) as calls,  # the leaf modules' calls, seen by export
            ):
                ep = torch.export.export(model, inputs.args, inputs.kwargs, strict=False)
        except Exception as e:  # export raises many types; each means "cannot export"
            raise _both_failed(model, fx_error, e) from e
        flat = _flat_user_inputs(ep, inputs)
        _inline_autocast_off(ep.graph_module)
        assembled = assemble_export(ep.graph)  # new tensors written part by part: one cat each
        lifted = {
            s.arg.name: ep.constants[s.target] for s in ep.graph_signature.input_specs
            if s.kind == InputKind.CONSTANT_TENSOR and s.target in ep.constants
        }  # fmt: skip
        if scatter_export(ep.graph, lifted) or assembled:  # writes into slices of tensors
            ep.graph_module.recompile()
        _check_static_sizes(ep.graph)
        return _Rewriter(model, ep, inputs, flat, calls).run(), flat


_SIZE_CHECKS = {torch.ops.aten._assert_scalar.default, torch.ops.aten.sym_constrain_range.default,
                torch.ops.aten.sym_constrain_range_for_size.default}  # fmt: skip


def _symbolic(val: Any) -> bool:
    return isinstance(val, torch.SymInt | torch.SymBool | torch.SymFloat)


def _check_static_sizes(graph: fx.Graph) -> None:
    """Sizes the example input does not fix: torch.export keeps a size symbolic only where it
    depends on tensor values (boolean-mask indexing, ``nonzero``, ``unique``).

    The model's own checks on such sizes (``_assert_scalar``: "each example has one <eos>")
    and the size arithmetic only they read are dropped: they decide nothing symlab reads. A
    tensor may then have symbolic sizes, recorded in ``meta["symbolic_dims"]``; the converter
    refuses any whose units would lie on such an axis. A symbolic size read by anything else
    (``x.view(n, -1)`` with ``n`` counted from a mask) is refused by name."""
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in _SIZE_CHECKS:
            graph.erase_node(node)
    for node in reversed(list(graph.nodes)):
        if not node.users and node.op == "call_function" and _symbolic(node.meta.get("val")):
            graph.erase_node(node)
    for node in graph.nodes:
        val = node.meta.get("val")
        if _symbolic(val):
            raise UnsupportedOpError(
                f"node {node.name!r} of the torch.export graph has a size that depends on the "
                f"values of the input{where(node)}, and the model computes with that size: "
                "boolean-mask indexing, torch.nonzero, torch.unique and the like, whose sizes "
                "torch.export keeps symbolic. (torch.fx could not trace this model, so symlab "
                "read it through torch.export.) symlab reads a selection of rows by such a "
                "mask, but not arithmetic on its size: select the rows outside the model "
                "(before or after calling it), or make the module that selects them a leaf "
                "with a rule (symlab.frontend.declare_leaf, register_module_op and "
                "@symlab.symmetry.rule)"
            )
        if isinstance(val, torch.Tensor):
            dims = tuple(i for i, d in enumerate(val.shape) if isinstance(d, torch.SymInt))
            if dims:
                node.meta["symbolic_dims"] = dims


def _inline_autocast_off(gm: fx.GraphModule) -> None:
    """Put the ops of each ``with torch.autocast(..., enabled=False)`` block (torch.export's
    ``wrap_with_autocast`` higher-order op) back into ``gm``'s graph, in place.

    Exact only while autocast is off outside the block too, which is checked: the block then
    changes nothing (timm's efficientvit computes its attention in such a block). A block that
    turns autocast on, holds sub-graphs of its own or is read other than by ``getitem`` stays,
    and is refused by name (:func:`_higher_order`)."""
    g, changed = gm.graph, False
    for node in list(g.nodes):
        if node.op != "call_function" or node.target is not _WRAP_WITH_AUTOCAST:
            continue
        device, _dtype, enabled, _cache, sub_node, *operands = node.args
        if enabled or torch.is_autocast_enabled(str(device)) or sub_node.op != "get_attr":
            continue
        sub = getattr(gm, str(sub_node.target))
        inner = list(sub.graph.nodes)
        phs = [n for n in inner if n.op == "placeholder"]
        if len(phs) != len(operands) or any(n.op in ("get_attr", "call_module") for n in inner):
            continue
        if any(u.target is not operator.getitem for u in node.users):
            continue
        with g.inserting_before(node):
            out = g.graph_copy(sub.graph, dict(zip(phs, operands, strict=True)))
        outs = out if isinstance(out, tuple | list) else (out,)
        for user in list(node.users):
            user.replace_all_uses_with(outs[user.args[1]])
            g.erase_node(user)
        g.erase_node(node)
        if not sub_node.users:
            g.erase_node(sub_node)
        changed = True
    if changed:
        gm.recompile()


@contextlib.contextmanager
def _stack_traces(on: bool) -> Iterator[None]:
    """torch.fx's ``do_not_emit_stack_traces`` switch set for the body, then restored."""
    prev = fx.config.do_not_emit_stack_traces
    fx.config.do_not_emit_stack_traces = not on
    try:
        yield
    finally:
        fx.config.do_not_emit_stack_traces = prev


def _lazy_graph_modules() -> contextlib.AbstractContextManager[None]:
    """torch's lazily compiled graph modules for the body: the Python code of a graph module is
    generated on its first call, not by every pass that rewrites it (a sixth of export's time
    on GPT-2, whose graph symlab reads and never calls). A no-op on a torch without them."""
    try:
        from torch.fx._lazy_graph_module import _use_lazy_graph_module
    except ImportError:  # pragma: no cover - older or newer torch
        return contextlib.nullcontext()
    return _use_lazy_graph_module(True)


def _flat_user_inputs(ep: Any, inputs: ExampleInputs) -> list[Any]:
    """The values of the exported program's user inputs, in the order of its placeholders."""
    kwargs = inputs.kwargs
    if ep.call_spec.in_spec is not None:
        kwargs = reorder_kwargs(kwargs, ep.call_spec.in_spec)
    flat = pytree.tree_leaves((inputs.args, kwargs))
    n_user = sum(s.kind == InputKind.USER_INPUT for s in ep.graph_signature.input_specs)
    if len(flat) != n_user:
        raise TraceError(
            f"torch.export made {n_user} inputs of {len(flat)} arguments; pass tensors and "
            "plain Python values only"
        )
    return flat


def _brief(e: BaseException) -> str:
    text = " ".join(str(e).strip().split("\n", 1)[0].split())
    return f"{type(e).__name__}: {text[:300]}"


def _both_failed(model: nn.Module, fx_error: Exception, export_error: Exception) -> TraceError:
    return TraceError(
        f"neither torch.fx nor torch.export could trace {type(model).__name__}. "
        f"torch.fx: {_brief(fx_error)}. torch.export: {_brief(export_error)}. This usually means "
        "data-dependent control flow (an `if` on tensor values). Remove the branch (or write it "
        "with torch.where / torch.cond and register a rule for that op), declare the module as a "
        "leaf with a rule (symlab.frontend.fx.declare_leaf, symlab.frontend.modules."
        "register_module_op and @symlab.symmetry.rule), or describe the architecture with an "
        "ArchGraph / symlab builders"
    )


def _unmapped(node: fx.Node, what: str, fix: str | None = None) -> UnsupportedOpError:
    fix = fix or (
        "Give the op a rule with @symlab.symmetry.rule('<op>') and map it with "
        f"symlab.frontend.fx.register_function({_op_name(node)}, '<op>'), or move the code "
        "into a module registered with symlab.frontend.modules.register_module_op and "
        "symlab.frontend.fx.declare_leaf"
    )
    return UnsupportedOpError(
        f"node {node.name!r} of the torch.export graph: {what}{where(node)}. (torch.fx could "
        "not trace this model, so symlab read it through torch.export.) symlab never assumes "
        f"an unknown op is harmless. {fix}"
    )


_WRAP_WITH_AUTOCAST = getattr(torch.ops.higher_order, "wrap_with_autocast", None)

#: what a higher-order op of torch.export stands for in the user's forward
_HOP_SOURCE = {
    "wrap_with_autocast": "a `with torch.autocast(...)` block of the forward",
    "wrap_with_set_grad_enabled": "a `with torch.no_grad()` / `torch.set_grad_enabled` block "
    "of the forward",
}


def _higher_order(node: fx.Node) -> UnsupportedOpError:
    name = getattr(node.target, "__name__", str(node.target))
    what = _HOP_SOURCE.get(name, "control flow or a wrapped region of the forward")
    return _unmapped(
        node,
        f"{what}, which torch.export keeps as the higher-order op {name} with its own "
        "sub-graph, and symlab does not read inside such sub-graphs",
        "torch.fx, which symlab tries first, runs such a block as ordinary Python: make the "
        "model traceable by torch.fx (the error it raised is why torch.export was used), or "
        "derive the symmetries of a copy whose forward has no such block",
    )


def _op_name(node: fx.Node) -> str:
    name = getattr(node.target, "_schema", None)
    if name is None:
        return str(node.target)
    ns, op = name.name.split("::")
    return f"torch.ops.{ns}.{op}.{name.overload_name or 'default'}"


class _Rewriter:
    def __init__(
        self, model: nn.Module, ep: Any, inputs: ExampleInputs, flat: list[Any], recorded: Calls
    ) -> None:
        self.ep = ep
        self.calls = LeafCalls(model, ep, inputs, flat, recorded)
        self.graph = fx.Graph()
        self.env: dict[fx.Node, Any] = {}
        self.live: set[fx.Node] = set()  # nodes computed from a user input
        self.pure: set[fx.Node] = {  # nodes computed from constants alone
            n for n in ep.graph.nodes
            if n.op == "placeholder" and self.calls.kind[n.name][0] == InputKind.CONSTANT_TENSOR
        }  # fmt: skip
        moved = {s.arg.name for s in ep.graph_signature.input_specs
                 if s.kind == InputKind.PARAMETER
                 or (s.kind == InputKind.BUFFER and s.persistent is not False
                     and self.calls.state(s.kind, s.target).is_floating_point())}  # fmt: skip
        self.carrying = reachable(  # nodes some parameter reaches: the others are fixed data
            ep.graph.nodes, lambda n: n.op == "placeholder" and n.name in moved
        )

    # -- emitting the torch-level graph --------------------------------------------------------
    def arg(self, a: Any, user: fx.Node) -> Any:
        def one(n: fx.Node) -> Any:
            if n in self.env:
                return self.env[n]
            if n.op == "placeholder":
                return self.placeholder_attr(n)
            if n in self.calls.group_of:
                raise TraceError(
                    f"node {user.name!r} reads the inside of the call of "
                    f"{self.calls.group_of[n].path!r} before the call ends; symlab cannot "
                    "collapse that call into one op"
                )
            raise TraceError(f"node {user.name!r} reads {n.name!r} before it is computed")

        return fx.node.map_arg(a, one)

    def placeholder_attr(self, node: fx.Node) -> fx.Node:
        kind, target = self.calls.kind[node.name]
        if kind in (InputKind.PARAMETER, InputKind.BUFFER):
            new = self.graph.get_attr(target)
        elif kind == InputKind.CONSTANT_TENSOR and isinstance(
            self.ep.constants[target], torch.Tensor
        ):
            new = self.graph.call_function(_constant(self.ep.constants[target]))
        else:
            raise _unmapped(node, f"an input of kind {kind}")
        self.env[node] = new
        return new

    def emit(self, node: fx.Node, kind: str, target: Any, args: tuple, kwargs: dict) -> fx.Node:
        new = self.graph.create_node(kind, target, args, kwargs)
        for key in ("stack_trace", "symbolic_dims"):
            if node.meta.get(key):
                new.meta[key] = node.meta[key]
        return new

    def emit_group(self, g: Group) -> None:
        args, kwargs, out = g.call
        leaves = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        what = f"module {g.path!r} ({type(g.module).__name__})"
        used: set[fx.Node] = set()

        def to_node(t: Any) -> Any:
            if isinstance(t, torch.Tensor):
                if len(leaves) == 1 and len(g.inputs) == 1:
                    src = g.inputs[0]
                else:
                    src = self.calls.match(t, g.inputs, f"an argument of {what}")
                    if src in used and src in self.pure:  # equal constants (an LSTM's zero
                        v = self.calls.value(src)  # h_0 and c_0): any unused twin is the same
                        twins = [c for c in g.inputs if c not in used and c in self.pure
                                 and torch.equal(self.calls.value(c), v)]  # fmt: skip
                        src = twins[0] if twins else src
                used.add(src)
                return self.arg(src, g.nodes[0])
            if not isinstance(t, (*_LITERALS, slice)):
                raise TraceError(f"{what} is called with a {type(t).__name__}: not traceable")
            return t

        new_args, new_kwargs = pytree.tree_map(to_node, (tuple(args), dict(kwargs)))
        if set(g.inputs) - used:
            names = sorted(n.name for n in set(g.inputs) - used)
            raise UnsupportedOpError(
                f"{what} reads tensors that are not its arguments ({', '.join(names)}): for "
                "instance another module's weights (weight sharing); symlab cannot map that call"
            )
        for n in g.nodes:  # a module writing in place into its argument (ReLU(inplace=True))
            if n.args and n.args[0] in g.inputs and writes_in_place(n):
                _check_private_write(n)
        call_node = self.emit(g.nodes[0], "call_module", g.path, new_args, new_kwargs)
        if isinstance(out, torch.Tensor):
            if len(g.outputs) > 1:
                raise TraceError(f"{what} returns one tensor but the graph reads several of its")
            self.env.update(dict.fromkeys(g.outputs, call_node))
            return
        paths = _tuple_leaves(out, what)  # (output, (h_n, c_n)) of an LSTM: nested
        for o in g.outputs:
            i = self.calls.output_index(o, tuple(t for _, t in paths), what)
            node = call_node
            for k in paths[i][0]:
                node = self.graph.call_function(operator.getitem, (node, k))
            self.env[o] = node

    def emit_op(self, node: fx.Node) -> None:
        if isinstance(node.target, torch._ops.HigherOrderOperator):
            raise _higher_order(node)
        target, packet = node.target, _packet(node)
        in_place = getattr(packet, "__name__", "").endswith("_")
        outs = _out_arguments(node, in_place)
        if not node.users and not in_place and not outs:
            return  # dead: the indices of a max pool, an assertion on metadata
        pure = all(a in self.pure for a in flat_nodes((node.args, node.kwargs)))
        if not pure and node not in self.carrying and node.op == "call_function" and target is not \
                operator.getitem and (packet not in ATEN or in_place) \
                and packet not in FIRST_OF_PAIR:  # fmt: skip
            # fixed data (ids, masks, positions): its op needs no rule, whatever it is
            self.env[node] = self.emit(node, "call_function", target,
                                       *self.arg((node.args, node.kwargs), node))  # fmt: skip
            return
        packet = self.out_of_place(node, packet)
        for written in outs:  # torch.mul(a, b, out=buf)
            _check_private_write(node, written)  # then the op is read as making a new tensor
        if pure:
            self.pure.add(node)  # reads no input, parameter or buffer: a constant
            value = self.calls.value(node)
            if isinstance(value, torch.Tensor):
                self.env[node] = self.graph.call_function(_constant(value))
            return
        if target is operator.getitem:
            src = node.args[0]
            if isinstance(src, fx.Node) and _packet(src) in FIRST_OF_PAIR:
                if node.args[1] != 0:
                    raise _unmapped(node, f"the indices returned by {_op_name(src)}",
                                    "Use the pooled values only.")  # fmt: skip
                self.env[node] = self.env[src]
                return
            self.env[node] = self.emit(node, "call_function", operator.getitem,
                                       self.arg(node.args, node), {})  # fmt: skip
            return
        if packet is torch.ops.aten.cat and self.skip_empty(node):
            return
        if target in USER_FUNCS or packet in USER_FUNCS:  # registered with register_function
            self.env[node] = self.emit(node, "call_function", target,
                                       *self.arg((node.args, node.kwargs), node))  # fmt: skip
            return
        args, kwargs = self.arg((tuple(node.args), dict(node.kwargs)), node)
        if packet is torch.ops.aten.to and _returns_self(node):
            self.env[node] = args[0]  # x.to(x's own dtype and device) is x itself
            return
        call = rewrite(packet, args, kwargs) if packet is not None else None
        if call is None and not (set(flat_nodes((node.args, node.kwargs))) & self.live):
            # computed from parameters or buffers alone: torch.fx would read these ops too
            self.env[node] = self.emit(node, "call_function", target, args, kwargs)
            return
        if call is None:
            if packet is torch.ops.aten.slice_scatter:  # made by scattered.py
                raise _unmapped(
                    node,
                    "a write into a strided slice (t[..., a:b:k] = v) of a tensor with units",
                    "symlab reads writes into slices without a step as a torch.cat of the "
                    "tensor's pieces. Write it out of place (torch.where, torch.cat)",
                )
            if written_in_parts(node):
                raise _unmapped(
                    node,
                    f"the tensor this {_op_name(node)} makes is then written part by part "
                    "into its slices, and the writes do not assemble it",
                    "symlab reads such a tensor as the torch.cat of its parts only when the "
                    "writes cover it exactly along one axis (no part left as allocated, no "
                    "overlap, no stepped slice) and nothing reads it or writes in place "
                    "between them. Build it with torch.cat (or torch.stack) instead",
                )
            raise _unmapped(node, f"the aten op {_op_name(node)} has no mapping to a symlab op")
        kind, new_target, new_args, new_kwargs = call
        if kind == "forward":
            self.env[node] = new_args[0]
        else:
            self.env[node] = self.emit(node, kind, new_target, new_args, new_kwargs)

    def skip_empty(self, node: fx.Node) -> bool:
        """Read ``torch.cat([empty, x])`` as ``x``, where ``empty`` is a constant with no
        entries (a key/value cache's first update: ``torch.cat([torch.tensor([]), k], -2)``,
        which torch.cat allows); True when ``node`` was read so."""
        parts = node.args[0] if node.args else None
        if not isinstance(parts, list | tuple):
            return False
        kept = [
            p for p in parts
            if not (p in self.pure and isinstance(v := self.calls.value(p), torch.Tensor)
                    and v.numel() == 0)
        ]  # fmt: skip
        if len(kept) != 1 or len(kept) == len(parts) or not isinstance(kept[0], fx.Node):
            return False
        self.env[node] = self.arg(kept[0], node)
        return True

    def out_of_place(self, node: fx.Node, packet: Any) -> Any:
        """The out-of-place op of an in-place one (``relu_`` → ``relu``), when that is exact:
        the mutated tensor is no input, no view, and read by nothing else (no view of it can
        see the mutation)."""
        name = getattr(packet, "__name__", "")
        if not name.endswith("_") or name.startswith("_") or not hasattr(torch.ops.aten, name[:-1]):
            return packet
        _check_private_write(node)
        return getattr(torch.ops.aten, name[:-1])

    def run(self) -> fx.Graph:
        last = {g.nodes[-1] for g in self.calls.groups.values()}
        specs = self.ep.graph_signature.output_specs
        outputs = [i for i, s in enumerate(specs) if s.kind == OutputKind.USER_OUTPUT]
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                if self.calls.kind[node.name][0] == InputKind.USER_INPUT:
                    self.env[node] = self.graph.placeholder(node.name)
                    self.live.add(node)
            elif node.op == "output":
                # by position (the specs' names may be stale: a write into a slice of an
                # output makes the output another node, :mod:`symlab.frontend.scattered`)
                values = list(node.args[0])
                if len(values) != len(specs):
                    raise TraceError(f"torch.export gave {len(values)} outputs for {len(specs)}")
                res = [self.arg(values[i], node) for i in outputs]
                self.graph.output(res[0] if len(res) == 1 else tuple(res))
            elif node in self.calls.group_of:
                g = self.calls.group_of[node]
                if node in last:
                    self.emit_group(g)
                    if any(i in self.live for i in g.inputs):
                        self.live.update(g.nodes)
            else:
                self.emit_op(node)
                if set(flat_nodes((node.args, node.kwargs))) & self.live:
                    self.live.add(node)
        self.graph.lint()
        return self.graph


def _tuple_leaves(out: Any, what: str) -> list[tuple[tuple[int, ...], torch.Tensor | None]]:
    """The leaves of a module's tuple output, nested tuples included, with their index paths;
    a named error for anything but tensors, ``None`` and tuples (or lists) of them."""
    if isinstance(out, torch.Tensor | None):
        return [((), out)]
    if not isinstance(out, tuple | list):
        raise TraceError(
            f"{what} returns a {type(out).__name__}: symlab reads modules returning tensors "
            "and (nested) tuples of tensors"
        )
    return [((i, *p), t) for i, o in enumerate(out) for p, t in _tuple_leaves(o, what)]


def _out_arguments(node: fx.Node, in_place: bool) -> list[Any]:
    """The arguments an op that is not an in-place op writes into: its ``out=`` tensors."""
    schema = getattr(node.target, "_schema", None)
    if in_place or schema is None or node.op != "call_function":
        return []
    found = []
    for i, arg in enumerate(schema.arguments):
        if arg.alias_info is not None and arg.alias_info.is_write:
            found.append(node.args[i] if i < len(node.args) else node.kwargs.get(arg.name))
    return found


def _check_private_write(node: fx.Node, src: Any = None) -> None:
    """Refuse the in-place op ``node`` unless nothing but it reads the tensor it writes (its
    first argument, or ``src``), or reads it only before the write into a fresh tensor
    (``attn /= attn.sum(-1, keepdim=True)``: the sum is taken first and shares no memory)."""
    src = node.args[0] if src is None else src
    if not isinstance(src, fx.Node) or may_alias(src) or not read_before(src, node):
        raise UnsupportedOpError(
            f"node {node.name!r} of the torch.export graph: the in-place op {_op_name(node)} "
            f"writes a tensor that other tensors may share{where(node)}; symlab reads "
            "in-place ops as out-of-place ones only when nothing else can see the write. "
            "Write it out of place (y = y + 1 instead of y += 1, y = torch.mul(a, b) instead "
            "of torch.mul(a, b, out=y))"
        )


def _constant(value: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A graph function returning ``value``: what torch.fx makes of a tensor computed from no
    traced value (``torch.triu(torch.ones(t, t))``), a constant the converter keeps fixed."""

    def constant() -> torch.Tensor:
        return value

    return constant


def _packet(node: fx.Node) -> Any:
    return getattr(node.target, "overloadpacket", None)


def _returns_self(node: fx.Node) -> bool:
    """Whether an ``aten.to`` call returns its input itself: the same dtype, device and layout,
    no ``copy=True``, no other memory format (what ``Tensor.to`` checks before it copies).
    torch.export then records every later read of the input, made before the call or after
    it, as a read of the call's node (Llama's RMSNorm casts its input to float32, a no-op for a
    float32 model, after the residual stream has kept it): reading the call as its input
    restores the program's own data flow.

    >>> class Cast(torch.nn.Module):
    ...     def forward(self, x):
    ...         return x.to(torch.float32) + x.to(torch.float64).float() + x.to(x, copy=True)
    >>> ep = torch.export.export(Cast(), (torch.ones(2),), strict=False)
    >>> [_returns_self(n) for n in ep.graph.nodes if _packet(n) is torch.ops.aten.to]
    [True, False, False, False]
    """
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node) or not isinstance(node.target, torch._ops.OpOverload):
        return False
    out, x = node.meta.get("val"), src.meta.get("val")
    if not isinstance(out, torch.Tensor) or not isinstance(x, torch.Tensor):
        return False
    same = (out.dtype, out.device, out.layout) == (x.dtype, x.device, x.layout)
    bound = node.normalized_arguments(
        node.graph.owning_module, normalize_to_only_use_kwargs=True
    ) if node.graph.owning_module is not None else None  # fmt: skip
    if not same or bound is None:
        return False
    fmt = bound.kwargs.get("memory_format")
    return not bound.kwargs.get("copy", False) and fmt in (None, torch.preserve_format)
