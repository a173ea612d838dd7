"""Which tensors of a traced graph can carry units: a forward reachability pass from parameters.

A symmetry moves parameters, so it can move a tensor only if some parameter reaches it. A
tensor computed from the network's inputs and constants alone — token ids, attention masks,
position indices, ``cumsum``/``argmax``/``new_zeros`` of them, comparisons, ``|`` of masks —
is the same whatever element of the group acts: it is fixed data, an input like the network's
own, and no op rule is needed for the op that made it. The converter
(:mod:`symlab.frontend.convert`) reads such tensors as fixed ``input`` nodes and the torch.export
reader (:mod:`symlab.frontend.export`) keeps their aten ops as they are; rules apply only to the
ops a parameter reaches, so an op without a rule on parameter-reached data is still refused.

The sources are the floating parameters and buffers of the ``state_dict`` (the tensors the
action moves; integer buffers such as position ids are fixed data) wherever the graph reads
them: ``get_attr`` nodes and the calls of leaf modules that hold any parameter or buffer
(torch.fx), parameter and buffer inputs (torch.export). Every node
reading a source, directly or through other nodes, carries units. An in-place write of such a
tensor into another one (``mask.masked_fill_(m, h)``, ``x[i] = h``) makes the written tensor a
source, and with it the tensor it is a view of (its *base*), so that every reader of that
memory carries units too. Sound because torch.fx and torch.export make every read of a
module's tensors such a node.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from symlab.frontend.fxutil import flat_nodes

__all__ = ["makes_fresh", "reachable", "unit_carrying", "writes"]

_IN_PLACE_FUNCS = {
    operator.setitem, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    operator.ifloordiv, operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor,
    operator.ilshift, operator.irshift, operator.imatmul,
}  # fmt: skip
# (not the dtype casts ``float``, ``double``, ``half``, ``long``, ``int``, ``bool``: a tensor of
# that dtype already is returned itself)
_FRESH_METHODS = {"clone", "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor",
                  "detach_copy"}  # fmt: skip


def writes(node: fx.Node) -> bool:
    """Whether ``node`` writes into its first argument (``x.add_(y)``, ``x += y``, ``x[i] = y``,
    an aten op whose schema marks a write).

    >>> g = fx.symbolic_trace(lambda x: x.relu_() + 1).graph
    >>> [writes(n) for n in g.nodes]
    [False, True, False, False]
    """
    if node.op == "call_module":  # nn.ReLU(inplace=True)
        owner = node.graph.owning_module
        try:
            module = owner.get_submodule(str(node.target)) if owner is not None else None
        except AttributeError:
            module = None
        return getattr(module, "inplace", False) is True
    if _inplace_argument(node):  # F.relu(x, inplace=True)
        return True
    if node.op == "call_method":
        name = str(node.target)
        return (name.endswith("_") and not name.startswith("_")) or name == "__setitem__"
    if node.op != "call_function":
        return False
    if node.target in _IN_PLACE_FUNCS:
        return True
    if getattr(node.target, "__module__", None) in ("_operator", "operator"):
        return False  # operator.or_, and_, not_: Python's operators, never in place
    schema = getattr(node.target, "_schema", None)
    if schema is not None:
        return any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
    name = getattr(node.target, "__name__", "")
    return name.endswith("_") and not name.startswith("_")


def _inplace_argument(node: fx.Node) -> bool:
    """Whether a call passes ``inplace=True`` (by keyword, or by position to a Python function
    with an ``inplace`` parameter, as ``F.relu(x, True)``)."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op != "call_function" or not any(a is True for a in node.args):
        return False
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bound.arguments.get("inplace") is True


#: composite ops (``CompositeImplicitAutograd``: written in terms of other ops) whose schema
#: promises a fresh tensor and which always make one. Others do not keep that promise in every
#: case — ``dropout`` when not training, ``type_as`` to the same dtype, a one-operand ``einsum``
#: and ``sum_to_size`` return their input itself — so a composite op not listed here is taken
#: to share memory with its tensor arguments.
_FRESH_COMPOSITES = frozenset(
    f"aten::{name}"
    for name in (
        "linear", "bilinear", "matmul", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
        "conv_transpose2d", "conv_transpose3d", "layer_norm", "group_norm", "batch_norm",
        "instance_norm", "rms_norm", "softmax", "log_softmax", "scaled_dot_product_attention",
        "cosine_similarity", "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_avg_pool1d",
        "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "pad", "std",
        "var", "square", "outer", "ger", "kron", "inner", "tensordot",
    )
)  # fmt: skip


def makes_fresh(schema: Any) -> bool:
    """Whether an aten op whose schema marks no result as an alias always returns a new
    tensor: one with kernels of its own must keep its schema; a composite op must be listed in
    :data:`_FRESH_COMPOSITES`.

    >>> makes_fresh(torch.ops.aten.linear.default._schema)
    True
    >>> makes_fresh(torch.ops.aten.dropout.default._schema)  # eval mode: its input itself
    False
    >>> [makes_fresh(op._schema) for op in (torch.ops.aten.add.Tensor, torch.ops.aten.softmax.int)]
    [True, True]
    """
    full = f"{schema.name}.{schema.overload_name}" if schema.overload_name else schema.name
    if not torch._C._dispatch_has_kernel_for_dispatch_key(full, "CompositeImplicitAutograd"):
        return True
    return schema.name in _FRESH_COMPOSITES


#: functions returning views of several tensor arguments, one per argument (as a tuple)
_VIEWS_OF_EACH = {torch.broadcast_tensors, torch.meshgrid, torch.atleast_1d, torch.atleast_2d,
                  torch.atleast_3d}  # fmt: skip


def _source(node: fx.Node) -> Any:
    """The argument whose memory ``node``'s result may share (if it is not fresh): the first,
    except for ``torch.einsum`` (its one operand: with several the result is new) and an item
    of a function returning a view of each argument (``torch.broadcast_tensors(a, b)[1]``)."""
    if node.target in (torch.einsum, torch.ops.aten.einsum.default):
        ops = flat_nodes(node.args[1:])
        return ops[0] if len(ops) == 1 else None
    if node.target is operator.getitem and isinstance(node.args[0], fx.Node):
        multi = node.args[0]
        if multi.target in _VIEWS_OF_EACH:
            one = len(multi.args) == 1 and isinstance(multi.args[0], list | tuple)
            items, i = multi.args[0] if one else multi.args, node.args[1]
            if isinstance(i, int) and -len(items) <= i < len(items):
                return items[i]  # meshgrid([a, b])[1], broadcast_tensors(a, b)[1]: b's view
    return node.args[0]


#: module classes whose call always returns a new tensor (when not ``inplace``). Any other
#: module — ``nn.Identity``, ``nn.Dropout`` in eval mode (its input itself), ``nn.Flatten``
#: (a view), a module of the user's read as a leaf — may return its input's memory.
_FRESH_MODULES: frozenset[type] = frozenset({
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
    nn.ConvTranspose2d, nn.ConvTranspose3d, nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d,
    nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.RMSNorm, nn.LocalResponseNorm, nn.Embedding, nn.EmbeddingBag, nn.MaxPool1d,
    nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.Softmax, nn.LogSoftmax, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU,
    nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Softshrink,
    nn.Hardshrink, nn.LogSigmoid, nn.PReLU, nn.Threshold, nn.GLU, nn.MultiheadAttention,
})  # fmt: skip


#: functions that always return a new tensor (when they do not write in place): any other
#: function of the graph is taken to perhaps return its first argument or a view of it
_FRESH_FUNCS: frozenset[Any] = frozenset({
    F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.rms_norm, F.linear,
    F.bilinear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, F.embedding, torch.matmul, operator.matmul, torch.bmm, torch.mm,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, torch.add,
    torch.sub, torch.mul, torch.div, F.softmax, torch.softmax, F.log_softmax, torch.cat,
    torch.stack, torch.where, F.relu, torch.relu, F.gelu, F.silu, torch.sigmoid, torch.tanh,
    F.leaky_relu, F.elu, F.softplus, F.hardtanh, F.relu6, F.hardswish, F.hardsigmoid, F.mish,
    F.avg_pool1d, F.avg_pool2d, F.max_pool1d, F.max_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, torch.mean, torch.sum, F.normalize,
})  # fmt: skip


def _fresh_module(node: fx.Node) -> bool:
    """Whether the ``call_module`` ``node`` returns a new tensor (:data:`_FRESH_MODULES`)."""
    owner = node.graph.owning_module
    try:
        mod = owner.get_submodule(str(node.target)) if owner is not None else None
    except AttributeError:
        return False
    return type(mod) in _FRESH_MODULES and not getattr(mod, "inplace", False)


def _base(node: fx.Node) -> fx.Node:
    """The tensor whose memory ``node`` may share: up through views (and ops and modules not
    known to make a fresh tensor) to a node that owns its memory."""
    while node.op in ("call_function", "call_method", "call_module") and node.args:
        if node.op == "call_module":
            if _fresh_module(node) or not isinstance(node.args[0], fx.Node):
                return node
            node = node.args[0]  # perhaps its input itself, or a view of it
            continue
        if node.op == "call_function" and node.target in _FRESH_FUNCS and not writes(node):
            return node
        src = _source(node)
        if not isinstance(src, fx.Node):
            return node
        schema = getattr(node.target, "_schema", None)
        if schema is not None and schema.returns and schema.returns[0].alias_info is None \
                and makes_fresh(schema):  # fmt: skip
            return node  # an aten op returning a fresh tensor
        if node.op == "call_method" and node.target in _FRESH_METHODS:
            return node
        node = src
    return node


_METADATA_ATTRS = {"device", "dtype", "shape", "ndim", "layout", "is_cuda", "requires_grad"}
_METADATA_METHODS = {"size", "dim", "numel", "get_device", "is_floating_point"}


def _metadata(node: fx.Node) -> bool:
    """A read of a tensor's device, dtype or shape (``w.device``, ``x.size(1)``): the same
    whatever values the tensor holds, so it carries no units (``torch.zeros(shape).to(
    self.proj.weight.device)`` is fixed data)."""
    if node.op == "call_function" and node.target is getattr and len(node.args) == 2:
        return node.args[1] in _METADATA_ATTRS
    if node.op == "call_function" and node.target in (torch.numel, torch.Tensor.size):
        return True
    return node.op == "call_method" and node.target in _METADATA_METHODS


def reachable(nodes: Iterable[fx.Node], is_source: Callable[[fx.Node], bool]) -> set[fx.Node]:
    """The nodes that a source reaches (in graph order ``nodes``), in-place writes of reached
    tensors making their bases sources too (module docstring).

    >>> g = fx.symbolic_trace(lambda x, y: (x + 1, y * 2)).graph
    >>> sorted(n.name for n in reachable(g.nodes, lambda n: n.name == "x"))
    ['add', 'output', 'x']
    """
    order = list(nodes)
    sources = {n for n in order if is_source(n)}
    while True:
        reached: set[fx.Node] = set()
        for n in order:
            if n in sources or (
                not _metadata(n) and any(a in reached for a in flat_nodes((n.args, n.kwargs)))
            ):
                reached.add(n)
        tainted = {
            _base(n.args[0]) for n in order
            if n in reached and writes(n) and n.args and isinstance(n.args[0], fx.Node)
            and n.args[0] not in reached
        }  # fmt: skip
        if tainted <= sources:
            return reached
        sources |= tainted


def _holds_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def unit_carrying(gm: fx.GraphModule, state: Mapping[str, torch.Tensor]) -> set[fx.Node]:
    """The nodes of the torch.fx graph ``gm`` that some parameter or buffer of ``state`` (the
    model's ``state_dict``) reaches.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.emb = nn.Embedding(10, 4)
    ...     def forward(self, ids):
    ...         pos = torch.cumsum(ids != 0, dim=1)  # from the input alone: fixed
    ...         return self.emb(ids) * pos.unsqueeze(-1)
    >>> net = Net()
    >>> gm = fx.symbolic_trace(net)
    >>> sorted(n.name for n in unit_carrying(gm, net.state_dict()))
    ['emb', 'mul', 'output']
    """

    def source(node: fx.Node) -> bool:
        if node.op == "get_attr":  # integer buffers (position ids) never carry units
            t = state.get(str(node.target))
            return t is not None and (t.is_floating_point() or t.is_complex())
        if node.op == "call_module":
            return _holds_state(gm.get_submodule(str(node.target)))
        return False

    return reachable(gm.graph.nodes, source)
