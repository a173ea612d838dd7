"""``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` expanded into one graph node per layer and direction.

Layer ``k`` reads the output of layer ``k - 1`` (the concatenation of both directions when
bidirectional) and, when given, the initial states; the module's tuple output is read by
indexing: ``output`` is the last layer's node (or concatenation), ``h_n`` (and ``c_n``) a
``join`` of every layer's node (each layer's final state moves with that layer's hidden units;
the join ties them, a subgroup: sound). The rules are in :mod:`symlab.symmetry.recurrent_rules`.

Refused with :class:`~symlab.errors.UnsupportedOpError`: ``proj_size > 0``, a
``PackedSequence`` input, inputs whose units are not on the last axis, and using the output
tuple other than by indexing (or passing ``(h_n, c_n)`` on as another layer's initial state).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.fx as fx
from torch import nn

from symlab.errors import UnsupportedOpError
from symlab.frontend.fxutil import where
from symlab.frontend.layers import state_key
from symlab.frontend.readers import arg
from symlab.graph.archgraph import ParamSpec

if TYPE_CHECKING:
    from symlab.frontend.convert import Converter

__all__ = ["RECURRENT_MACROS"]

_OPS = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "GRU": "gru", "LSTM": "lstm"}
_AXES = {"weight_ih": ("none", "in"), "weight_hh": ("none", "none"), "bias_ih": ("none",),
         "bias_hh": ("none",)}  # fmt: skip


def _join(prefix: str, tag: str) -> str:
    return f"{prefix}#{tag}" if prefix else f"@{tag}"


def _refuse(node: fx.Node, name: str, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"node {name!r}: {why}{where(node)}")


def _is_index(user: fx.Node, src: fx.Node) -> bool:
    return (user.op == "call_function" and user.target is operator.getitem
            and user.args[0] is src and isinstance(user.args[1], int))  # fmt: skip


def _check_uses(cv: Converter, node: fx.Node, name: str, lstm: bool) -> None:
    """The output tuple is only indexed; ``(h_n, c_n)`` only indexed or passed on whole as
    the initial state of another recurrent module."""
    for user in node.users:
        if not _is_index(user, node):
            raise _refuse(node, name, "the output tuple of a recurrent module is used whole; "
                          "index or unpack it (output, h_n = rnn(x))")  # fmt: skip
        if lstm and user.args[1] == 1:
            for u in user.users:
                passed_on = u.op == "call_module" and isinstance(
                    cv.gm.get_submodule(str(u.target)), nn.RNNBase
                ) and arg(u, 1, "hx") is user  # fmt: skip
                if not (_is_index(u, user) or passed_on):
                    raise _refuse(node, name, "the (h_n, c_n) tuple of an LSTM is used whole; "
                                  "index or unpack it")  # fmt: skip


_ZEROS = {torch.zeros, torch.zeros_like, "new_zeros", "zero_"}
_SAME = {"to", "detach", "contiguous", "float", "double", "type_as", "clone"}


def _zeros(a: Any) -> bool:
    """Whether fx node ``a`` is a tensor of zeros made in the forward (``torch.zeros(...)``,
    possibly moved by ``.to(...)``; through torch.export, a constant of zeros): an initial
    state equal to no state at all."""
    while isinstance(a, fx.Node) and a.target in _SAME:
        a = a.args[0]
    if not isinstance(a, fx.Node) or a.op not in ("call_function", "call_method"):
        return False
    if a.target in _ZEROS:
        return True
    if a.op == "call_function" and not a.args and not a.kwargs and \
            getattr(a.target, "__name__", "") == "constant":  # fmt: skip
        value = a.target()  # the torch.export fallback's constant (symlab.frontend.export)
        return isinstance(value, torch.Tensor) and not bool(value.any())
    return False


def _states(cv: Converter, node: fx.Node, name: str, hx: Any, lstm: bool) -> list[Any]:
    """The fx nodes of the initial states (none when not given)."""
    if hx is None:
        return []
    if lstm and isinstance(hx, fx.Node) and hx in cv.tuples:
        return [(hx, i) for i in (0, 1)]
    if lstm and isinstance(hx, list | tuple) and len(hx) == 2:
        return list(hx)
    if not lstm and isinstance(hx, fx.Node):
        return [hx]
    raise _refuse(node, name, "initial states must be tensors with the hidden units last")


def _state_tensors(cv: Converter, node: fx.Node, name: str, states: list[Any]) -> list[str]:
    out = []
    for s in states:
        t = cv.tuples[s[0]](s[1], node) if isinstance(s, tuple) else cv.name.get(s)
        if t is None or cv.fa[t] != len(cv.shape[t]) - 1:
            raise _refuse(node, name, "initial states must be tensors with the hidden units last")
        out.append(t)
    return out


def _recurrent(cv: Converter, node: fx.Node, target: str, mod: nn.Module, ins: list[str]) -> None:
    assert isinstance(mod, nn.RNNBase)
    name, lstm = target or "@root", mod.mode == "LSTM"
    if getattr(mod, "proj_size", 0):
        raise _refuse(node, name, "LSTM with proj_size > 0 is not supported yet")
    x = cv.name.get(arg(node, 0, "input"))  # type: ignore[arg-type]
    if x is None:
        raise _refuse(node, name, "a recurrent module's input must be a tensor (a "
                      "PackedSequence is not supported)")  # fmt: skip
    if cv.fa[x] != len(cv.shape[x]) - 1:
        raise _refuse(node, name, f"its input's units lie on axis {cv.fa[x]}, not last")
    _check_uses(cv, node, name, lstm)
    given = _states(cv, node, name, arg(node, 1, "hx"), lstm)
    zero = tuple(not isinstance(s, tuple) and _zeros(s) for s in given)
    states = _state_tensors(cv, node, name, given)
    if x in states or len(set(states)) != len(states):
        raise _refuse(node, name, "the input and the initial states must be distinct tensors")
    h, d_count = int(mod.hidden_size), 2 if mod.bidirectional else 1
    batch = cv.shape[x][:-1]
    roles = ("weight_ih", "weight_hh", *(("bias_ih", "bias_hh") if mod.bias else ()))
    cur, cells = x, []
    for k in range(int(mod.num_layers)):
        outs = []
        for d in range(d_count):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            keys = {r: state_key(target, r + suffix) for r in roles}
            params = [ParamSpec(r, tuple(getattr(mod, r + suffix).shape), _AXES[r])  # type: ignore[arg-type]
                      for r in roles]  # fmt: skip
            cell = _join(target, f"l{k}" + ("r" if d else ""))
            cv.add_node(cell, _OPS[mod.mode], [cur, *states], (*batch, h), -1, params,
                        param_keys=keys, hidden=h, bias=bool(mod.bias),
                        zero_states=zero)  # fmt: skip
            outs.append(cell)
        cells += outs
        cur = outs[0] if d_count == 1 else cv.add_node(
            _join(target, f"l{k}cat"), "concat", outs, (*batch, d_count * h), -1
        )  # fmt: skip
    batched = len(cv.shape[x]) == 3
    b = cv.shape[x][0 if mod.batch_first else 1] if batched else None
    state_shape = (len(cells), *((b,) if batched else ()), h)
    made: dict[str, str] = {}

    def final(tag: str) -> str:  # h_n or c_n: every layer's final state, stacked
        if tag not in made:
            made[tag] = cv.add_node(_join(target, tag), "join", cells, state_shape, -1)
        return made[tag]

    def pick(index: int, consumer: fx.Node) -> str:
        if index == 0:
            return cur
        if not lstm:
            return final("h_n")
        cv.tuples[consumer] = lambda i, _: final("h_n" if i == 0 else "c_n")
        return cur  # the (h_n, c_n) tuple itself is only indexed (checked above)

    cv.tuples[node] = pick


RECURRENT_MACROS: dict[type[nn.Module], Callable[..., Any]] = {
    nn.RNN: _recurrent,
    nn.GRU: _recurrent,
    nn.LSTM: _recurrent,
}
"""Module type → reader ``(converter, node, target, module, inputs)``."""
