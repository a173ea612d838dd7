"""Does a layer's slot order matter to the rest of the network? The *shared-consumer* check and
the *bending* of the unaligned midpoint (Bürgin et al., ICML 2026, extended; the derivation is
in ``docs/concepts/identifiability.md``).

Along the unaligned path ``θ(α) = (1 − α) θ_A + α θ_B`` the layer after a layer of units reads,
at the midpoint, ``W̄ h̄`` with ``W̄ = (W_A + W_B)/2`` and ``h̄`` the layer's midpoint output.
Writing ``h̄ = (h_A + h_B)/2 − δ``::

    W̄ h̄ = (W_A h_A + W_B h_B)/2 − (W_A − W_B)(h_A − h_B)/4 − W̄ δ

The middle term is the *slot mismatch*: it vanishes when the runs' units correspond and agree
(``h_A ≈ h_B``: what function-class identifiability tests) — or when the rest of the network
is the same in both runs (``W_A = W_B``: a fixed read-out, as in the paper's sandbox
``y = Σ_h ReLU((W ⊙ M) x + b)``). The last term is the *bending* of the activation on the
segment between the runs' pre-activations: for ReLU, ``δ = min(|z_A|, |z_B|)/2`` where the two
runs' pre-activations differ in sign and 0 elsewhere.

:func:`consumer_check` tests the second case directly, by stitching: the rest of run A, of run
B and of the midpoint model, each fed the other run's layer output, must give exactly that
run's network output (so the slot order of this layer does not matter to what reads it, at
either end or in the middle). It then measures the bending as the network output's midpoint
defect ``E‖f(z̄) − (f(z_A) + f(z_B))/2‖²`` (``z̄`` the mean of the runs' pre-activations, ``f``
the shared rest of the network; mean over rows and output entries), which for the mean squared
error is the midpoint's loss increase over the endpoints' mean when both endpoints fit their
targets — exact for a first layer, whose pre-activation along the path is ``(1 − α) z_A + α z_B``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from symlab.identify.layers import _module, check_inputs, run_hooked

__all__ = ["ConsumerCheck", "consumer_check", "consumer_checks"]

#: relative output difference below which a stitched output counts as the same (float32 noise)
SHARED_RTOL = 1e-4


@dataclass(frozen=True)
class ConsumerCheck:
    """The shared-consumer check of one layer of two runs (see the module docstring).

    Attributes:
        shared: the rest of the network computes the same function of this layer's output in
            run A, run B and the midpoint model (on the data), so the layer's slot order cannot
            make a barrier; False also when the check could not be made (``why``).
        stitch_error: the largest relative output difference of the three stitchings.
        bending: the midpoint output defect ``E‖f(z̄) − (f(z_A) + f(z_B))/2‖²`` through the
            shared rest of the network (NaN when not shared).
        why: what decided ``shared`` (one line).

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 8, 2], seed=0)
    >>> c = consumer_check(a, a, torch.randn(64, 4), "layers.0.linear")  # a run against itself
    >>> c.shared, c.bending < 1e-12
    (True, True)
    """

    shared: bool
    stitch_error: float
    bending: float
    why: str


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    scale = float((b - b.mean(0)).pow(2).mean()) + float(b.pow(2).mean()) * 1e-12
    return float((a - b).pow(2).mean()) / max(scale, 1e-300)


def consumer_checks(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, layers: list[str]
) -> dict[str, ConsumerCheck]:
    """:func:`consumer_check` for several layers, with one plain pass of each run for all of
    them (one stitched pass more per layer whose consumer differs, four where it is shared).

    >>> import symlab as sl
    >>> a = sl.nn.MLP([4, 8, 8, 2], seed=0)
    >>> checks = consumer_checks(a, a, torch.randn(32, 4), ["layers.0.linear", "layers.1.linear"])
    >>> [c.shared for c in checks.values()]
    [True, True]
    """
    from symlab.connect.interpolate import check_same_architecture

    check_same_architecture(model_a.state_dict(), model_b.state_dict())
    check_inputs(model_a, x, argument="x", model_name="model_a")
    mods_a = {name: _module(model_a, name) for name in layers}
    mods_b = {name: _module(model_b, name) for name in layers}
    y_a, seen_a = run_hooked(model_a, mods_a, x)
    y_b, seen_b = run_hooked(model_b, mods_b, x)
    nan, out = math.nan, {}
    mid: dict[str, torch.Tensor] | None = None
    for name in layers:
        calls = len(seen_a[name]), len(seen_b[name])
        if calls != (1, 1):
            why = f"{name!r} runs {calls[0]} and {calls[1]} times per forward pass of the runs"
            out[name] = ConsumerCheck(False, nan, nan, why)
            continue
        z_a, z_b = seen_a[name][0][1], seen_b[name][0][1]
        if not all(isinstance(t, torch.Tensor) for t in (y_a, y_b, z_a, z_b)):
            why = "the network's or the layer's output is not a tensor"
            out[name] = ConsumerCheck(False, nan, nan, why)
            continue
        err = _rel(run_hooked(model_a, mods_a, x, (name, z_b))[0], y_b)
        if err <= SHARED_RTOL:
            if mid is None:
                sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
                mid = {k: (v + sd_b[k]) / 2 if v.is_floating_point() else v
                       for k, v in sd_a.items()}  # fmt: skip
            err = max(err, _rel(run_hooked(model_b, mods_b, x, (name, z_a))[0], y_a),
                      _rel(run_hooked(model_a, mods_a, x, (name, z_a), mid)[0], y_a))  # fmt: skip
        if not err <= SHARED_RTOL:
            out[name] = ConsumerCheck(False, err, nan, (
                f"the rest of the network differs between the runs (stitched output off by "
                f"{err:.2g} of its variance)"))  # fmt: skip
            continue
        y_bar = run_hooked(model_a, mods_a, x, (name, (z_a + z_b) / 2))[0]
        bend = float((y_bar.double() - (y_a.double() + y_b.double()) / 2).pow(2).mean())
        out[name] = ConsumerCheck(True, err, bend, (
            f"the rest of the network is the same in both runs and along the path (stitched "
            f"output off by {err:.2g} of its variance)"))  # fmt: skip
    return out


def consumer_check(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, layer: str
) -> ConsumerCheck:
    """Whether the rest of the network after ``layer`` is the same in both runs and along their
    unaligned path, and the midpoint's bending through it (see the module docstring).

    Refuses (``shared=False``, with ``why``) a layer called more than once per forward pass or
    a network whose output is not one tensor: the stitching could not be made soundly. Runs of
    different architectures raise :class:`symlab.errors.ArchitectureMismatchError`, inputs
    that do not fit ``model_a`` or a layer it does not have a :class:`symlab.errors.DataError`.

    >>> import symlab as sl
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> consumer_check(a, b, torch.randn(64, 4), "layers.0.linear").shared  # trained heads differ
    False
    """
    return consumer_checks(model_a, model_b, x, [layer])[layer]
