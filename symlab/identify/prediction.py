"""The alignment-free merging prediction and its check against a measured barrier.

Default rule, ``"function_class"`` (Bürgin, Herbst, Lin, Jegelka, ICML 2026; the derivation is
in ``docs/concepts/identifiability.md``). Along the unaligned path ``θ(α) = (1 − α) θ_A + α θ_B``
slot ``i`` of a layer computes, on its support, the straight line between A's function and B's
in that slot — both inside the slot's effective function class. The path stays low-loss when
(i) every slot of B already holds the function nearest to A's in that slot: the identity is an
optimal assignment under the move cost ``D_ij = (a^B_j − a^A_i)ᵀ S_i⁺ (a^B_j − a^A_i)``, the
least trainable-norm change from A's function in slot ``i`` to B's unit ``j`` (function-class
score ≥ ``threshold``; the runs' units are identifiable as each other), and (ii) both runs sit at
the same point of their structural gauge orbits — the score is computed with the gauges
removed, and a rescaled or sign-flipped unit bends the path even when its function agrees, so
the mean midpoint gain distortion must stay within ``gauge_tolerance``. Coherence and κ enter
through the classes: a coherent support (``ν(U)`` near 1) or a large fixed part (κ) makes the
classes small and distinct, so independent runs land in the same slots; a spread support with
κ = 0 lets every slot hold every function (``ν(U)`` and the fixed share are in the reason).

``"class_cost"`` uses the paper's realisation cost from the class centre, ``C^{AB}``, instead
(B's functions where A's classes realise them most cheaply; a standard layer is degenerate and
predicts a barrier). ``"correlation"`` is the earlier empirical predictor: every layer's
activation-matching score ≥ ``threshold`` (blind to positive scaling; kept selectable).

:func:`test_prediction` measures the real unaligned barrier with
:func:`symlab.connect.interpolate`, checks that both endpoints trained
(:func:`symlab.connect.check_endpoints`) and reports whether prediction and measurement agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from symlab.errors import ArgumentError, DataError
from symlab.identify.identifiability import IdentifiabilityReport, identifiability

__all__ = ["RULES", "Prediction", "PredictionCheck", "predict_alignment_free", "test_prediction"]

#: The prediction rules :func:`predict_alignment_free` accepts (the first is the default).
RULES = ("function_class", "class_cost", "correlation")


@dataclass(frozen=True)
class Prediction:
    """Whether unaligned interpolation should be low-loss, and why.

    Attributes:
        low_loss: the prediction.
        identifiable / not_identifiable: the layers that pass / fail the rule.
        threshold: the score threshold; rule: ``"function_class"`` or ``"correlation"``.
        reason: one paragraph naming the deciding layer and its numbers.
        layers: per layer, the numbers the rule read (score, degenerate, gauge distortion,
            coherence ν(U), fixed share).

    >>> import symlab as sl, torch
    >>> a = sl.nn.MLP([4, 8, 2], asym={"num_fixed": 2, "kappa": 1.0}, seed=0)
    >>> p = predict_alignment_free(sl.identify.identifiability(a, a, torch.randn(64, 4)))
    >>> p.low_loss, p.identifiable, p.not_identifiable, p.rule
    (True, ('layers.0.linear',), (), 'function_class')
    """

    low_loss: bool
    identifiable: tuple[str, ...]
    not_identifiable: tuple[str, ...]
    threshold: float
    reason: str
    rule: str = "function_class"
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _function_class_verdict(
    report: IdentifiabilityReport,
    threshold: float,
    gauge_tolerance: float,
    rule: str,
    max_distance: float | None = None,
    bending_tolerance: float = 0.1,
    shared_consumer: bool = True,
) -> tuple[list[str], list[str], dict[str, dict[str, Any]], dict[str, str]]:
    ok, bad, info, why = [], [], {}, {}
    for name, lay in report.layers.items():
        fc = lay.function_class
        if fc is None:  # no function classes here: the correlation measure decides this layer
            info[name] = {"score": lay.score, "measure": "correlation"}
            passed = lay.score >= threshold
            why[name] = f"correlation score {lay.score:.2f} (no function classes)"
            (ok if passed else bad).append(name)
            continue
        score = fc.score if rule == "function_class" else fc.class_score
        ctx = f"ν(U) = {fc.coherence:.2f}, fixed share {fc.fixed_share:.2f}"
        info[name] = {"score": score, "degenerate": fc.degenerate, "measure": rule,
                      "gauge_distortion": fc.gauge_distortion, "coherence": fc.coherence,
                      "fixed_share": fc.fixed_share, "distance": fc.distance,
                      "shared_consumer": fc.shared_consumer, "bending": fc.bending}  # fmt: skip
        # a shared consumer: slot order cannot matter to what reads the layer, bending decides
        if shared_consumer and fc.shared_consumer:
            passed = fc.bending <= bending_tolerance
            cmp = "≤" if passed else ">"
            why[name] = (
                f"the rest of the network is the same in both runs, so its slot order does not "
                f"matter; the midpoint's bending through it is {fc.bending:.3g} {cmp} "
                f"{bending_tolerance} ({ctx})"
            )
        elif rule == "class_cost" and fc.degenerate:
            passed, why[name] = (
                False,
                (
                    f"its function classes cannot tell the units apart (every assignment costs the "
                    f"same; {ctx})"
                ),
            )
        elif score < threshold:
            what = ("B's units are not in the slots nearest to A's" if rule == "function_class"
                    else "the identity is not the cheapest placement of B's functions")  # fmt: skip
            passed, why[name] = False, f"{what} ({rule} score {score:.2f} < {threshold}; {ctx})"
        elif fc.gauge_distortion > gauge_tolerance:
            passed, why[name] = (
                False,
                (
                    f"the units correspond (score {score:.2f}) but sit at different points of "
                    f"their gauge orbits (midpoint gain distortion {fc.gauge_distortion:.2f} > "
                    f"{gauge_tolerance})"
                ),
            )
        elif max_distance is not None and fc.distance > max_distance:
            passed, why[name] = (
                False,
                (
                    f"the units correspond (score {score:.2f}) but the runs' functions in each "
                    f"slot are far apart (relative effective distance ρ = {fc.distance:.2f} > "
                    f"{max_distance})"
                ),
            )
        else:
            passed, why[name] = (
                True,
                (f"{rule} score {score:.2f}, gauge distortion {fc.gauge_distortion:.2f}, {ctx}"),
            )
        (ok if passed else bad).append(name)
    return ok, bad, info, why


def predict_alignment_free(
    report: IdentifiabilityReport,
    threshold: float = 0.9,
    *,
    rule: str = "function_class",
    gauge_tolerance: float = 0.1,
    max_distance: float | None = None,
    bending_tolerance: float = 0.1,
    shared_consumer: bool = True,
) -> Prediction:
    """Predict whether unaligned interpolation between the report's two runs is low-loss.

    ``rule="function_class"`` (default; see the module docstring): every layer has
    function-class score ≥ ``threshold`` and gauge distortion ≤ ``gauge_tolerance``.
    ``rule="class_cost"``: the same with the class-centred ``class_score``, and no layer
    degenerate. ``rule="correlation"``: every layer's correlation score ≥ ``threshold``.
    ``max_distance`` (off by default) adds, for the function-class rules, that every layer's
    relative effective distance at the identity ρ (``FunctionClassLayer.distance``: 0 when the
    runs realise the same functions, ≈ 1 for unrelated ones) stays at or below it — the
    derivation's own condition that ``Σ_i D_ii`` is small, with a threshold to choose.
    A layer whose consumer is shared (``FunctionClassLayer.shared_consumer``: the rest of the
    network is the same in both runs, as after a fixed read-out) is decided by the midpoint's
    bending instead, for both function-class rules: it passes when the bending (the output's
    mean squared midpoint defect, in the units of a mean squared error) is at most
    ``bending_tolerance`` — whether its units are identifiable or not, since their order cannot
    matter to what reads them. ``shared_consumer=False`` decides every layer by its units'
    identifiability alone (the rule without this extension, kept for comparison).

    >>> import symlab as sl, torch
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> report = sl.identify.identifiability(a, b, torch.randn(64, 4))
    >>> p = predict_alignment_free(report)
    >>> p.low_loss, p.not_identifiable  # independent standard runs: units in unrelated slots
    (False, ('layers.0.linear',))
    >>> [predict_alignment_free(report, rule=r).low_loss for r in ("class_cost", "correlation")]
    [False, False]
    """
    if not isinstance(report, IdentifiabilityReport):
        raise DataError(
            f"predict_alignment_free needs the IdentifiabilityReport of two runs, got "
            f"{type(report).__name__}: pass symlab.identify.identifiability(model_a, model_b, data)"
        )
    if rule not in RULES:
        raise ArgumentError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "correlation":
        ok = [k for k, v in report.layers.items() if v.score >= threshold]
        bad = [k for k, v in report.layers.items() if v.score < threshold]
        info = {k: {"score": v.score, "measure": "correlation"} for k, v in report.layers.items()}
        why = {k: f"correlation score {v.score:.2f}" for k, v in report.layers.items()}
    else:
        ok, bad, info, why = _function_class_verdict(
            report,
            threshold,
            gauge_tolerance,
            rule,
            max_distance,
            bending_tolerance,
            shared_consumer,
        )
    shared = {k for k, v in info.items() if shared_consumer and v.get("shared_consumer")}
    if bad:
        first = bad[0]
        if first in shared:
            what = "the unaligned midpoint bends"
            then = "the path bends through a shared read-out, so a barrier is expected"
        else:
            what = "are not identifiable"
            then = "its units must be aligned before merging, so a barrier is expected"
        reason = (
            f"{len(bad)} of {len(report.layers)} layers fail ({what}); {first}: {why[first]} "
            f"— {then}"
        )
    else:
        reason = (
            f"all {len(ok)} layers pass ({'; '.join(why[k] for k in ok[:3])}): the runs' units "
            "already correspond (or their order does not matter to what reads them), so the "
            "unaligned path is expected to stay low-loss"
        )
    return Prediction(not bad, tuple(ok), tuple(bad), threshold, reason, rule, info)


@dataclass(frozen=True)
class PredictionCheck:
    """A prediction next to the measured unaligned barrier and the endpoint check.

    ``agree`` compares the prediction with the measurement; it is only meaningful when
    ``trained`` (both endpoints passed :func:`symlab.connect.check_endpoints`).

    >>> import symlab as sl, torch
    >>> a = sl.nn.MLP([4, 8, 2], seed=0)
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> check = test_prediction(a, a, (x, y), min_accuracy=0.0)
    >>> check.prediction.low_loss, check.low_loss_measured, check.agree, check.barrier < 1e-6
    (True, True, True, True)
    """

    prediction: Prediction
    barrier: float
    barrier_kind: str
    low_loss_measured: bool
    tolerance: float
    curve: Any
    endpoints: Any = None

    @property
    def agree(self) -> bool:
        return self.prediction.low_loss == self.low_loss_measured

    @property
    def trained(self) -> bool:
        """Whether both endpoints trained (True when no check was made)."""
        return True if self.endpoints is None else bool(self.endpoints.trained)

    def __str__(self) -> str:
        verdict = "agrees" if self.agree else "DISAGREES"
        ends = "" if self.trained else f" [not counted: {self.endpoints.reason}]"
        return (
            f"predicted {'low-loss' if self.prediction.low_loss else 'a barrier'}; measured "
            f"{self.barrier_kind} barrier {self.barrier:.4g} (low-loss means ≤ {self.tolerance}) "
            f"— prediction {verdict}{ends}. {self.prediction.reason}"
        )


def test_prediction(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    *,
    report: IdentifiabilityReport | None = None,
    threshold: float = 0.9,
    rule: str = "function_class",
    barrier_kind: str = "max_endpoint",
    tolerance: float = 0.1,
    n_alphas: int = 21,
    min_accuracy: float | None = None,
    max_loss: float | None = None,
    max_distance: float | None = None,
    **kwargs: Any,
) -> PredictionCheck:
    """Predict from identifiability, then measure the unaligned barrier (``tolerance`` on the
    chosen barrier decides "low-loss"; Bürgin et al. use their ``max_endpoint`` barrier and 21
    interpolation points) and check that both endpoints trained (``min_accuracy`` /
    ``max_loss`` override :func:`symlab.connect.check_endpoints`' default thresholds;
    ``max_distance`` is :func:`predict_alignment_free`'s; ``tolerance`` is also its
    ``bending_tolerance``).

    >>> import symlab as sl, torch
    >>> a, b = sl.nn.MLP([4, 8, 2], seed=0), sl.nn.MLP([4, 8, 2], seed=1)
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> check = test_prediction(a, b, (x, y))
    >>> check.prediction.low_loss, check.barrier_kind, len(check.curve.alphas), check.trained
    (False, 'max_endpoint', 21, False)
    """
    from symlab.connect import check_endpoints, interpolate

    report = report or identifiability(model_a, model_b, data)
    pred = predict_alignment_free(report, threshold, rule=rule, max_distance=max_distance,
                                  bending_tolerance=tolerance)  # fmt: skip
    curve = interpolate(model_a, model_b, data, n_alphas=n_alphas, **kwargs)
    b = float(curve.barrier(barrier_kind))
    ends = check_endpoints(curve.alphas, curve.loss, curve.accuracy, data=data,
                           split=kwargs.get("split", "test"), min_accuracy=min_accuracy,
                           max_loss=max_loss)  # fmt: skip
    return PredictionCheck(pred, b, barrier_kind, b <= tolerance, tolerance, curve, ends)


test_prediction.__test__ = False  # type: ignore[attr-defined]  (not a pytest test)
