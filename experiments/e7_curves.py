"""E7 Curves vs lines: trained Bézier curves vs the straight line, before and after alignment.

Two independent runs of a ReLU MLP on MNIST-1D per job. Between them, four paths: the straight
line and a trained quadratic Bézier curve (:func:`symlab.connect.bezier_curve`; control point
initialised at the midpoint and trained with Adam on the expected training loss along the
curve), each between the raw models and after Git Re-Basin weight matching of the second to the
first. Curves are trained with several step budgets to see how fast each path reaches low loss.
Barriers are on the training loss (``max L − mean of the endpoints``); test barriers are
recorded too.

Published claims: Garipov, Izmailov, Podoprikhin, Vetrov, Wilson (NeurIPS 2018), "Loss
Surfaces, Mode Connectivity, and Fast Ensembling of DNNs" (their Fig. 1/2): two independent
minima are joined by a simple low-loss curve although the straight line between them has a high
barrier. Tatro, Chen, Das, Melnyk, Sattigeri, Lai (NeurIPS 2020), "Optimizing Mode Connectivity
via Neuron Alignment" (their Fig. 1/3): aligning the networks first lowers the linear barrier
and gives curves of lower loss for the same training budget.

Settings: ``small`` — 40-128-128-10, Adam 3e-3, 15 epochs, curve budgets 30, 100 and 400 steps,
2 pairs (about 5 s per pair on 2 cores). ``full`` — 40-512-512-512-10, 40 epochs, budgets 50 …
3200 steps, 5 pairs (about 8 min on 2 cores; 95 s per pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

import symlab as sl
from symlab.nn import MLP
from symlab.runner import Experiment, Report, Setting

from ._common import (
    claims_report,
    endpoint_check,
    figure,
    fmt,
    left_out_note,
    markdown_table,
    mean_std,
    save_figure,
    split_trained,
    train_config,
    train_models,
)

ALIGNS = ("none", "weight")
LABEL = {"none": "unaligned", "weight": "weight matched"}


@dataclass(frozen=True)
class E7Config:
    """One E7 job: a pair of runs, and linear and Bézier paths at each curve budget."""

    hidden: tuple[int, ...] = (128, 128)
    data: str = "mnist1d"
    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 128
    epochs: int = 15
    curve_steps: tuple[int, ...] = (30, 100, 400)
    curve_lr: float = 1e-2
    n_alphas: int = 17


def _test_barrier(curve: sl.connect.Curve, data: Any) -> float:
    """The loss barrier of a (trained) curve on the test split."""
    with torch.no_grad():
        losses = [
            float(F.cross_entropy(curve.model_at(float(t))(data.x_test), data.y_test))
            for t in curve.alphas
        ]
    return sl.connect.loss_barrier(curve.alphas, torch.tensor(losses, dtype=torch.float64))


def run(cfg: E7Config, seed: int) -> dict[str, Any]:
    """Train runs ``2·seed`` and ``2·seed + 1``; linear and Bézier paths, raw and aligned."""
    data = sl.data.load(cfg.data)
    widths = [data.input_shape[0], *cfg.hidden, data.num_classes]
    tc = train_config(cfg)
    (a, b), stats = train_models(lambda s: MLP(widths, seed=s), [2 * seed, 2 * seed + 1], data, tc)
    G = sl.symmetries(a)
    wm = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, seed=seed).apply_model(b)
    out: dict[str, Any] = {**endpoint_check(stats, data), "runs": stats, "paths": {}}
    for align, other in (("none", b), ("weight", wm)):
        rec: dict[str, Any] = {}
        for split in ("train", "test"):
            line = sl.connect.interpolate(a, other, data, cfg.n_alphas, split=split)
            rec[f"linear_{split}"] = line.barrier("loss")
            if split == "train":
                rec["alphas"] = [round(float(x), 6) for x in line.alphas]
                rec["linear_loss"] = [float(v) for v in line.loss]
        for steps in cfg.curve_steps:
            curve = sl.connect.bezier_curve(
                a,
                other,
                data,
                steps=steps,
                lr=cfg.curve_lr,
                n_alphas=cfg.n_alphas,
                split="train",
                seed=seed,
            )
            rec[f"bezier{steps}_train"] = curve.barrier("loss")
            rec[f"bezier{steps}_test"] = _test_barrier(curve, data)
            if steps == cfg.curve_steps[-1]:
                rec["bezier_loss"] = [float(v) for v in curve.loss]
        out["paths"][align] = rec
    return out


def _vals(recs: list[dict], align: str, key: str) -> list[float]:
    return [r["result"]["paths"][align][key] for r in recs]


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The qualitative claims, each with the numbers it rests on and whether it held."""
    if not records:
        return {}
    steps = list(records[0]["config"]["curve_steps"])
    m = {
        (al, k): mean_std(_vals(records, al, k))[0]
        for al in ALIGNS
        for k in ["linear_train", *(f"bezier{s}_train" for s in steps)]
    }
    top = f"bezier{steps[-1]}_train"
    tatro = all(m["weight", f"bezier{s}_train"] < m["none", f"bezier{s}_train"] for s in steps)
    return {
        "curve_beats_line": {
            "claim": "a trained Bézier curve joins unaligned minima at low loss where the line "
            "has a high barrier (Garipov et al. 2018)",
            "test": f"unaligned curve barrier ({steps[-1]} steps) < 0.25 × unaligned linear",
            "linear": m["none", "linear_train"],
            "curve": m["none", top],
            "held": m["none", top] < 0.25 * m["none", "linear_train"],
        },
        "alignment_lowers_line": {
            "claim": "alignment lowers the linear barrier, and a curve lowers it further "
            "(Tatro et al. 2020; Ainsworth et al. 2023)",
            "test": "aligned linear < 0.5 × unaligned linear; aligned curve < aligned linear",
            "aligned_linear": m["weight", "linear_train"],
            "aligned_curve": m["weight", top],
            "held": m["weight", "linear_train"] < 0.5 * m["none", "linear_train"]
            and m["weight", top] < m["weight", "linear_train"],
        },
        "alignment_helps_curves": {
            "claim": "curves between aligned networks reach lower loss for the same training "
            "budget (Tatro et al. 2020)",
            "test": f"aligned curve barrier < unaligned at every budget {steps}",
            "unaligned_smallest_budget": m["none", f"bezier{steps[0]}_train"],
            "aligned_smallest_budget": m["weight", f"bezier{steps[0]}_train"],
            "held": tatro,
        },
    }


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (loss along the four paths; barrier vs curve budget) and summary of E7."""
    records, left_out = split_trained(records)
    steps = list(records[0]["config"]["curve_steps"]) if records else []
    keys = ["linear", *(f"bezier{s}" for s in steps)]
    rows = []
    for al in ALIGNS:
        for split in ("train", "test"):
            rows.append(
                [LABEL[al], split, *(fmt(_vals(records, al, f"{k}_{split}")) for k in keys)]
            )
    header = ["alignment", "split", "linear", *(f"Bézier, {s} steps" for s in steps)]
    table = markdown_table(header, rows)
    accs = [run["test_acc"] for r in records for run in r["result"]["runs"]]
    fig, (ax0, ax1) = figure(2)
    if records:
        first = records[0]["result"]["paths"]
        for i, al in enumerate(ALIGNS):
            p = first[al]
            ax0.plot(p["alphas"], p["linear_loss"], "--", color=f"C{i}", label=f"line, {LABEL[al]}")
            ax0.plot(
                p["alphas"],
                p["bezier_loss"],
                color=f"C{i}",
                label=f"Bézier ({steps[-1]} steps), {LABEL[al]}",
            )
            ms = [mean_std(_vals(records, al, f"bezier{s}_train")) for s in steps]
            ax1.errorbar(
                steps,
                [a for a, _ in ms],
                [s for _, s in ms],
                marker="o",
                capsize=3,
                color=f"C{i}",
                label=f"Bézier, {LABEL[al]}",
            )
            lin = mean_std(_vals(records, al, "linear_train"))[0]
            ax1.axhline(lin, color=f"C{i}", ls="--", lw=1, label=f"line, {LABEL[al]}")
        ax0.legend(fontsize=6)
        ax1.legend(fontsize=6)
        ax1.set_xticks(steps, [str(v) for v in steps])
        ax1.set_xticks([], minor=True)
    ax0.set(xlabel="α / t", ylabel="train loss", title="Loss along the path (first pair)")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="curve training steps",
        ylabel="train loss barrier",
        title="Barrier vs curve budget",
    )
    files = save_figure(fig, out_dir, f"e7_{setting}")
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e7_{setting}",
        [
            f"# E7 Curves vs lines ({setting})",
            "",
            "Corresponds to Garipov et al. 2018 (Figs. 1–2: trained curves between independent "
            "minima) and Tatro et al. 2020 (Figs. 1, 3: curves after neuron alignment). "
            f"Loss barriers; endpoint test accuracy {fmt(accs)}.",
            "",
        ],
        table + left_out_note(left_out),
        cl,
        files,
        cl.get("curve_beats_line", {}).get("held"),
    )


EXPERIMENT = Experiment(
    name="e7",
    title="Curves vs lines: Bézier curve vs linear path, before and after alignment",
    run=run,
    settings={
        "small": Setting(
            E7Config(),
            {},
            seeds=2,
            runtime="28 s CPU; 1.9 min wall measured on 2 loaded cores (load 22–23)",
        ),
        "full": Setting(
            E7Config(hidden=(512, 512, 512), epochs=40, curve_steps=(50, 200, 800, 3200)),
            {},
            seeds=5,
            runtime="~8 min on 2 cores (estimate, not measured)",
        ),
    },
    report=report,
    paper="Garipov et al. 2018 (Figs. 1–2); Tatro et al. 2020 (Figs. 1, 3)",
)
