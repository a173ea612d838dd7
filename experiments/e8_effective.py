"""E8 Effective symmetries: swap costs, identifiability, effective alignment and the prediction.

Bürgin, Herbst, Lin, Jegelka (ICML 2026), "Beyond Structural Symmetries": on the data's support
units exchange their functions at little norm cost even where no structural permutation
exists. Two kinds of jobs:

* ``part="swap_costs"`` — (a) the paper's headline figure: one masked sandbox net
  (``y = Σ_h ReLU((W ⊙ M) x + b)``, E3's :class:`SandboxNet`) trained on a teacher whose inputs
  have intrinsic dimension ``k`` (``relu(Σ z)``, ``z ~ N(0, I_k)`` spread over 32 ambient
  dimensions, coherence ``k/32``); the distribution of the swap costs ``T_ij`` relative to the
  mean self cost, and the effective group's size;
* ``part="pair"`` — two runs of one setting (shared masks and gates; different init and data
  order): the coherence sandbox (``mask`` or ``dense``, ``copies`` → coherence 1/copies) and
  MNIST-1D MLPs (standard, W-asymmetric κ ∈ {0, 0.5, 1, 2}, FiGLU, syre). Per pair: (b) both
  identifiability measures; (c) effective vs structural group sizes of every layer of run A;
  (d) the barrier (Bürgin et al.'s ``max_α L − max(L_0, L_1)``) unaligned, after weight
  matching in the derived group ("structural") and after effective matching — on the data's
  whole span (the function kept) and on a support relaxed to ``relaxed_ev`` of the variance
  (functions move across masks; the residual and B's loss change are recorded); (e) the
  function-class prediction (with its shared-consumer rule, the default, and without it), the
  class-centred and the correlation predictions against the measured unaligned barrier,
  counted only where both endpoints trained (:func:`symlab.connect.check_endpoints`); (f) the
  falsification search: pairs predicted to merge without alignment that do not; (g) the
  stability of C, T and the prediction when the inputs are shifted (Gaussian noise of
  ``shift`` × their standard deviation), and, for ReLU layers, the exact ReLU class on the
  finite support (:func:`symlab.identify.relu_realizers`) beside the linear one.

Settings: ``small`` — sandbox copies 1 and 10 (mask) and 10 (dense), 40 epochs, width 64;
MNIST-1D standard and W-asymmetric κ = 1, width 64, 8 epochs; swap costs at k = 1, 4; one seed
(about 1 min: 61 s on one worker, 50 s CPU, measured at load 5). ``full`` — the masked sandbox
at every coherence 1/copies, copies 1 … 10, the dense one at copies 1, 2, 5, 10, width 128,
100 epochs; MNIST-1D all seven variants at widths 64 and 128, 10 epochs; swap costs at k = 1,
2, 4, 8, 16; 5 seeds (165 jobs; 25 CPU-minutes, measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import symlab as sl
from symlab.runner import Experiment, Setting
from symlab.seeding import generator
from symlab.train import TrainConfig

from ._common import train_models
from .e3_identifiability import SandboxNet, sandbox_training
from .e8_report import claims as claims  # re-exported: the page publisher reads it
from .e8_report import report

MNIST_VARIANTS = ("standard", "wasym_k0", "wasym_k0.5", "wasym_k1", "wasym_k2", "figlu", "syre")


@dataclass(frozen=True)
class E8Config:
    """One E8 job (see the module docstring)."""

    part: str = "pair"
    family: str = "sandbox"
    variant: str = "mask"
    copies: int = 10
    width: int = 128
    mask_p: float = 0.15
    epochs: int = 100
    mnist_epochs: int = 10
    intrinsic_dim: int = 2
    ambient_dim: int = 32
    n_alphas: int = 21
    threshold: float = 0.9
    tolerance: float = 0.1
    rel_eps: float = 0.01
    shift: float = 0.1
    mask_seed: int = 0
    relaxed_ev: float = 0.95


def mnist_model(
    variant: str, width: int, d_in: int, d_out: int, seed: int, mask_seed: int
) -> nn.Module:
    """The MNIST-1D MLP of ``variant`` (E2's variants, plus Ziyin et al.'s syre with a fixed
    offset of scale ``1/√fan_in`` on every weight)."""
    from .e2_asymmetric import E2Config, make_model

    if variant == "syre":
        widths = [d_in, width, width, d_out]
        syre = [1.0 / math.sqrt(w) for w in widths[:-1]]
        asym = {"num_fixed": 0, "kappa": 0.0, "syre": syre}
        return sl.nn.MLP(
            widths, "gelu", norm="layernorm", asym=asym, seed=seed, mask_seed=mask_seed
        )
    cfg = E2Config(variant=variant, hidden=(width, width), mask_seed=mask_seed)
    return make_model(cfg, d_in, d_out, seed)


def _pair(cfg: E8Config, seed: int) -> tuple[nn.Module, nn.Module, Any, Any]:
    if cfg.family == "sandbox":
        data, tc, make = sandbox_training(cfg)
    elif cfg.family == "mnist1d":
        data = sl.data.load("mnist1d")
        tc = TrainConfig(
            optimizer="adamw",
            lr=3e-3,
            weight_decay=1e-2,
            epochs=cfg.mnist_epochs,
            batch_size=128,
            progress=False,
        )
        shape = data.input_shape[0], data.num_classes

        def make(s: int) -> nn.Module:
            return mnist_model(cfg.variant, cfg.width, *shape, s, cfg.mask_seed)

    else:
        raise ValueError(f"unknown family {cfg.family!r}; choose sandbox or mnist1d")
    (a, b), stats = train_models(make, [2 * seed, 2 * seed + 1], data, tc)
    return a, b, data, stats


def _compare(new: torch.Tensor, old: torch.Tensor) -> dict[str, float]:
    """How a cost matrix moved: Spearman correlation of the entries finite in both, and the
    fraction of entries that became (un)reachable."""
    from scipy.stats import spearmanr

    fin_new, fin_old = torch.isfinite(new), torch.isfinite(old)
    both = fin_new & fin_old
    rho = (
        float(spearmanr(new[both].numpy(), old[both].numpy()).statistic)
        if int(both.sum()) > 2
        else math.nan
    )
    return {"spearman": rho, "reach_flips": float((fin_new != fin_old).double().mean())}


def _groups(a: nn.Module, data: Any, G: sl.SymmetryGroup, rel_eps: float) -> dict[str, Any]:
    out = {}
    x = data.x_test
    for layer in sl.identify.function_class_layers(a, G):
        eg = sl.identify.effective_group(a, x, layer, G, rel_eps=rel_eps)
        out[layer] = {
            "structural_log10": eg.structural_log10_order,
            "effective_log10": eg.log10_order,
            "exact_log10": eg.exact_log10_order,
            "width": eg.n,
            "identifiable": float(eg.identifiable.double().mean()),
            "structural_inside": eg.contains_structural(),
        }
    return out


def _shift(
    a: nn.Module, b: nn.Module, data: Any, G: sl.SymmetryGroup, cfg: E8Config, seed: int, pred: bool
) -> dict[str, Any]:
    """(g) C, T and the prediction on inputs shifted by Gaussian noise."""
    x = data.x_test
    g = generator(seed, 81)
    xs = x + cfg.shift * x.std(0, keepdim=True) * torch.randn(x.shape, generator=g)
    layer = sl.identify.function_class_layers(a, G)[0]
    fc0 = sl.identify.function_classes(a, x, layer)
    fc1 = sl.identify.function_classes(a, xs, layer)
    rep = sl.identify.identifiability(a, b, (xs, data.y_test), G)
    p1 = sl.identify.predict_alignment_free(rep, cfg.threshold).low_loss
    return {
        "k": fc0.support.k,
        "k_shifted": fc1.support.k,
        "C": _compare(fc1.realization_cost(), fc0.realization_cost()),
        "T": _compare(fc1.swap_cost(), fc0.swap_cost()),
        "prediction_flips": p1 != pred,
    }


def _relu_vs_linear(a: nn.Module, data: Any, units: int = 8) -> dict[str, Any] | None:
    """(g) The exact ReLU class of the first hidden layer's most active units on the finite
    support beside the linear class: how much of its parameter norm each class could save, and
    how many free directions each leaves."""
    if not any(isinstance(m, nn.ReLU) for m in a.modules()):
        return None
    xf = data.x_train[:256]
    x = xf.double()
    w, mask, fixed = sl.identify.layer_parts(a, "hidden")
    m = torch.ones_like(w) if mask is None else mask
    w_eff = (0 if fixed is None else fixed) + m * w
    bias = a.get_submodule("hidden").bias.detach().double()
    fc = sl.identify.function_classes(a, xf, "hidden", 1.0)
    lin = torch.diagonal(fc.realization_cost())
    active = ((x @ w_eff.double().T + bias) > 0).sum(0)
    relu_save, lin_save, relu_dim, lin_dim = [], [], [], []
    for i in torch.argsort(-active)[:units].tolist():
        cols = torch.nonzero(m[i]).flatten()
        if not len(cols) or int(active[i]) == 0:
            continue
        r = sl.identify.relu_realizers(x[:, cols], w_eff[i, cols].double(), float(bias[i]))
        relu_save.append(r.norm_sq / max(r.original_norm_sq, 1e-300))
        lin_save.append(float(lin[i]) / max(float((w[i, cols].double() ** 2).sum()), 1e-300))
        relu_dim.append(r.face_dimension)
        xb = torch.cat([x[:, cols], torch.ones(len(x), 1, dtype=x.dtype)], 1)
        lin_dim.append(len(cols) + 1 - int(torch.linalg.matrix_rank(xb)))
    if not relu_save:
        return None
    return {
        "relu_norm_ratio": float(np.median(relu_save)),
        "linear_norm_ratio": float(np.median(lin_save)),
        "relu_face_dim": float(np.mean(relu_dim)),
        "linear_free_dim": float(np.mean(lin_dim)),
    }


def _swap_costs(cfg: E8Config, seed: int) -> dict[str, Any]:
    """(a) swap costs of one trained masked sandbox net on data of intrinsic dimension k."""
    k = cfg.intrinsic_dim
    data = sl.data.load(
        "coherence",
        seed=seed,
        ambient_dim=cfg.ambient_dim,
        latent_dim=k,
        copies=cfg.ambient_dim // k,
    )
    tc = TrainConfig(
        optimizer="adamw",
        lr=1e-2,
        weight_decay=1e-2,
        epochs=cfg.epochs,
        batch_size=128,
        progress=False,
    )
    make = lambda s: SandboxNet(cfg.ambient_dim, cfg.width, cfg.mask_p, cfg.mask_seed, s)  # noqa: E731
    (a,), stats = train_models(make, [seed], data, tc)
    fc = sl.identify.function_classes(a, data.x_test, "hidden", 0.999)
    C, T = fc.realization_cost(), fc.swap_cost()
    self_cost = float(torch.diagonal(C).mean())
    iu = torch.triu_indices(fc.n, fc.n, 1)
    t = (T[iu[0], iu[1]] / max(self_cost, 1e-300)).numpy()
    fin = t[np.isfinite(t)]
    eg = sl.identify.effective_group_from_costs(C, rel_eps=cfg.rel_eps)
    # quantiles over all pairs: a pair that cannot swap at all costs +inf
    q = np.quantile(t, [0.1, 0.25, 0.5, 0.75, 0.9], method="lower").tolist()
    return {
        "part": "swap_costs",
        "k": k,
        "support_k": fc.support.k,
        "runs": stats,
        "quantiles": q,
        "fraction_infinite": float(1 - len(fin) / len(t)),
        "fraction_cheap": float((fin <= cfg.rel_eps).sum() / len(t)),
        "log10_effective": eg.log10_order,
        "samples": fin[:: max(1, len(fin) // 400)].tolist(),
    }


def _barrier(curve: sl.connect.Curve) -> float:
    return curve.barrier("max_endpoint")


def run(cfg: E8Config, seed: int) -> dict[str, Any]:
    if cfg.part == "swap_costs":
        return _swap_costs(cfg, seed)
    if cfg.part != "pair":
        raise ValueError(f"unknown part {cfg.part!r}; choose pair or swap_costs")
    a, b, data, stats = _pair(cfg, seed)
    G = sl.symmetries(a, data.x_train[:2])
    rep = sl.identify.identifiability(a, b, data, G)
    fc_pred = sl.identify.predict_alignment_free(
        rep, cfg.threshold, bending_tolerance=cfg.tolerance
    )
    units_pred = sl.identify.predict_alignment_free(rep, cfg.threshold, shared_consumer=False)
    corr_pred = sl.identify.predict_alignment_free(rep, cfg.threshold, rule="correlation")
    class_pred = sl.identify.predict_alignment_free(rep, cfg.threshold, rule="class_cost")
    naive = sl.connect.interpolate(a, b, data, cfg.n_alphas)
    ends = sl.connect.check_endpoints(naive.alphas, naive.loss, naive.accuracy, data=data)
    wm = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, seed=seed).apply_model(b)
    eff = sl.align.effective_matching(a, b, data, G)
    # the support relaxed to a share of the variance: functions move across masks (residual)
    relaxed = sl.align.effective_matching(a, b, data, G, explained_variance=cfg.relaxed_ev)
    relaxed_curve = sl.connect.interpolate(a, relaxed.apply_model(b), data, cfg.n_alphas)
    barrier = _barrier(naive)
    layers = {
        k: {
            "correlation": v.score,
            "function_class": v.function_class_score,
            "class_score": None if v.function_class is None else v.function_class.class_score,
            "degenerate": None if v.function_class is None else v.function_class.degenerate,
            "distance": None if v.function_class is None else v.function_class.distance,
            "coherence": None if v.function_class is None else v.function_class.coherence,
            "fixed_share": None if v.function_class is None else v.function_class.fixed_share,
            "shared_consumer": None
            if v.function_class is None
            else v.function_class.shared_consumer,
            "bending": None if v.function_class is None else v.function_class.bending,
        }
        for k, v in rep.layers.items()
    }
    return {
        "part": "pair",
        "runs": stats,
        "trained": ends.trained,
        "endpoints": ends.reason,
        "layers": layers,
        "score_correlation": rep.score,
        "score_function_class": rep.function_class_score,
        "predicted_low_loss": fc_pred.low_loss,
        "predicted_low_loss_correlation": corr_pred.low_loss,
        "predicted_low_loss_units_only": units_pred.low_loss,
        "predicted_low_loss_class": class_pred.low_loss,
        "score_class": min(
            (v.function_class.class_score for v in rep.layers.values() if v.function_class),
            default=None,
        ),
        "gauge_distortion": max(
            (v.function_class.gauge_distortion for v in rep.layers.values() if v.function_class),
            default=None,
        ),
        "reason": fc_pred.reason,
        "barrier": barrier,
        "barrier_structural": _barrier(sl.connect.interpolate(a, wm, data, cfg.n_alphas)),
        "barrier_effective": _barrier(
            sl.connect.interpolate(a, eff.apply_model(b), data, cfg.n_alphas)
        ),
        "effective_residual": eff.residual,
        "barrier_effective_relaxed": _barrier(relaxed_curve),
        "effective_relaxed_residual": relaxed.residual,
        "effective_relaxed_loss_change": float(relaxed_curve.loss[-1] - naive.loss[-1]),
        "effective_moved": {k: v.moved for k, v in eff.layers.items()},
        "measured_low_loss": barrier <= cfg.tolerance,
        "groups": _groups(a, data, G, cfg.rel_eps),
        "shift": _shift(a, b, data, G, cfg, seed, fc_pred.low_loss),
        "relu": _relu_vs_linear(a, data) if cfg.family == "sandbox" else None,
        "log10_group_order": G.log10_order,
    }


_SANDBOX = {"part": ["pair"], "family": ["sandbox"]}
_MNIST = {"part": ["pair"], "family": ["mnist1d"]}
EXPERIMENT = Experiment(
    name="e8",
    title="Effective symmetries: swap costs, identifiability, effective alignment, prediction",
    run=run,
    settings={
        "small": Setting(
            E8Config(width=64, epochs=40, mnist_epochs=8),
            [
                {**_SANDBOX, "variant": ["mask"], "copies": [1, 10]},
                {**_SANDBOX, "variant": ["dense"], "copies": [10]},
                {**_MNIST, "variant": ["standard", "wasym_k1"]},
                {"part": ["swap_costs"], "intrinsic_dim": [1, 4]},
            ],
            seeds=1,
            runtime="~1 min (61 s measured on one worker at load 5; 50 s CPU)",
        ),
        "full": Setting(
            E8Config(),
            [
                {**_SANDBOX, "variant": ["mask"], "copies": list(range(1, 11))},
                {**_SANDBOX, "variant": ["dense"], "copies": [1, 2, 5, 10]},
                {**_MNIST, "variant": list(MNIST_VARIANTS), "width": [64, 128]},
                {"part": ["swap_costs"], "intrinsic_dim": [1, 2, 4, 8, 16]},
            ],
            seeds=5,
            runtime=(
                "25.4 min CPU; 32.1 min wall on one niced worker, machine load 3–7 (measured)"
            ),
        ),
    },
    report=report,
    paper="Bürgin et al. 2026 (swap costs vs intrinsic dimension; effective symmetries)",
)
