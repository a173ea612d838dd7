"""Rules for recurrent layers: one node per layer and direction of ``nn.RNN``, ``nn.GRU`` and
``nn.LSTM`` (the front-end, :mod:`symlab.frontend.recurrent`, expands a module into them).

A node reads the sequence ``x`` (and optionally the initial states ``h_0``, ``c_0``) and makes
the hidden sequence ``h``. A map ``h ↦ M h`` of the hidden units must commute with the
recurrence: ``W_hh ↦ M' W_hh M⁻¹`` (``M'`` the map of each gate block's rows),
``W_ih ↦ M' W_ih A⁻¹`` (``A`` any invertible map of the input features), ``b ↦ M' b``, and
every gate must give the same value, permuted (derivations in ``docs/concepts/symmetries.md``):

* ``rnn_tanh``: ``h' = tanh(W_ih x + W_hh h + b)``; tanh is odd: ``M = P S`` (signed
  permutations, the hyperoctahedral group ``S_H ⋉ {±1}^H``).
* ``rnn_relu``: relu is positively homogeneous: ``M = P D``, ``D > 0`` (``S_H ⋉ R_{>0}^H``).
* ``gru``: ``n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))``, ``h' = (1 - z) ⊙ n + z ⊙ h``
  with sigmoid gates ``r, z``: the gates may only permute (a sigmoid's value cannot be
  rescaled, and its flip ``1 - z`` would swap ``n`` and ``h``), ``n`` must move like ``h``, and
  tanh is odd: ``M = P S``; the rows of ``r`` and ``z`` are permuted only, the rows of ``n``
  permuted and sign-flipped.
* ``lstm``: ``c' = f ⊙ c + i ⊙ g``, ``h' = o ⊙ tanh(c')`` with sigmoid gates ``i, f, o`` and
  ``g = tanh(·)``: ``c`` and ``g`` share ``h``'s map ``M = P S`` (``tanh(S c) = S tanh(c)``);
  the rows of ``i, f, o`` are permuted only, the rows of ``g`` permuted and sign-flipped.

The input side admits any invertible map; an input shift (a sigmoid flip upstream) is absorbed
by ``b_ih`` when the layer has biases and no initial state (other than zeros). Initial states
move with the hidden units; zeros move with nothing.
"""

from __future__ import annotations

import torch

from symlab.graph.archgraph import ArchGraph, Node
from symlab.symmetry.elementwise_rules import POSITIVE, SIGNS
from symlab.symmetry.rules import rule
from symlab.symmetry.spec import ANY, OpSymmetry
from symlab.symmetry.transform import Transform

__all__ = ["GATES"]

Params = dict[str, torch.Tensor]

#: Per cell type, its gate blocks in torch's row order: ``full`` rows move with the hidden
#: units' whole map (permutation and sign or scale), ``perm`` rows (sigmoid gates) are only
#: permuted.
GATES: dict[str, tuple[str, ...]] = {
    "rnn_tanh": ("full",),
    "rnn_relu": ("full",),
    "gru": ("perm", "perm", "full"),  # r, z, n
    "lstm": ("perm", "perm", "full", "perm"),  # i, f, g, o
}


def recurrent_rule(node: Node, graph: ArchGraph) -> OpSymmetry:
    """One layer and direction of a recurrent module (``attrs['hidden']``, ``attrs['bias']``);
    inputs ``[x]``, ``[x, h_0]`` or ``[x, h_0, c_0]``. An initial state of zeros
    (``attrs['zero_states']``) moves with nothing (``M 0 = 0``); any other is tied to the
    hidden units."""
    x, *states = graph.inputs(node.name)
    zero = tuple(node.attrs.get("zero_states", ())) or (False,) * len(states)
    moving = [s for s, z in zip(states, zero, strict=True) if not z]
    hidden = POSITIVE if node.op == "rnn_relu" else SIGNS
    return OpSymmetry(
        tie=[(s, node.name) for s in moving],
        admits=[(x, ANY, "recurrent layer input"), (node.name, hidden, f"{node.op} hidden units")],
        absorbs_shift=bool(node.attrs.get("bias", True)) and not moving,
    )


def _rows(t: Transform, m: torch.Tensor, gates: tuple[str, ...]) -> torch.Tensor:
    """Move the rows of ``m`` (gate blocks stacked in order) by the hidden map ``t``."""
    blocks = list(m.reshape(len(gates), m.shape[0] // len(gates), *m.shape[1:]).unbind(0))
    for i, kind in enumerate(gates):
        b = blocks[i]
        if t.perm is not None:
            b = b.index_select(0, t.perm)
        if kind == "full" and t.scale is not None:
            if t.scale.ndim != 1:
                raise ValueError("recurrent hidden units admit diagonal maps only")
            b = b * t.scale.to(b.dtype).reshape(-1, *([1] * (b.ndim - 1)))
        blocks[i] = b
    return torch.cat(blocks, 0)


def _recurrent_act(node: Node, params: Params, t_in: list[Transform], t_out: Transform) -> Params:
    gates = GATES[node.op]
    w_ih = _rows(t_out, t_in[0].contract(params["weight_ih"], 1), gates)
    out = dict(params, weight_ih=w_ih)
    out["weight_hh"] = _rows(t_out, t_out.contract(params["weight_hh"], 1), gates)
    for key in ("bias_ih", "bias_hh"):
        if key in params:
            out[key] = _rows(t_out, params[key], gates)
    if "bias_ih" in params and t_in[0].shift is not None:
        out["bias_ih"] = out["bias_ih"] - w_ih @ t_in[0].shift.to(w_ih.dtype)
    return out


for _op in GATES:
    rule(_op)(recurrent_rule).action(_recurrent_act)
