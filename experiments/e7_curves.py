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

Settings: ``small`` — 40-128-128-10, Adam 3e-3, 15 epochs, curve budgets 30, 100 and 400 steps, 2
pairs. ``full`` — 40-512-512-512-10, 40 epochs, budgets 50 … 3200 steps, 5 pairs. Runtimes:
``symlab experiment list`` (estimates) and the published result page (measured). ``medium``
(published) — the small setting with 5 pairs. The full setting did not fit the shared 2-core
machine the pages were made on; see the result page.
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
    by_seed,
    ci_errorbar,
    claim,
    claims_report,
    data_name,
    difference_interval,
    endpoint_check,
    figure,
    fmt,
    left_out_note,
    log_axis,
    markdown_table,
    mean_std,
    paired,
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
    device: str = "cpu"  # where the runs train (measurements run on the CPU)


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
    (a, b), stats = train_models(
        lambda s: MLP(widths, seed=s), [2 * seed, 2 * seed + 1], data, tc, device=cfg.device
    )
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


def _seeded(recs: list[dict], align: str, key: str) -> dict[int, float]:
    return by_seed(recs, lambda r: r["result"]["paths"][align][key])


def _paired_diff(a: dict[int, float], b: dict[int, float], scale: float = 1.0) -> Any:
    x, y = paired(a, b)
    return difference_interval([scale * v for v in x], y, paired=True)


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims, each with the intervals over seeds its verdict rests on."""
    if not records:
        return {}
    steps = list(records[0]["config"]["curve_steps"])
    top = f"bezier{steps[-1]}_train"
    v = {(al, k): _seeded(records, al, k) for al in ALIGNS for k in ("linear_train", top)}
    for st in steps:
        for al in ALIGNS:
            v[al, f"bezier{st}_train"] = _seeded(records, al, f"bezier{st}_train")
    return {
        "curve_beats_line": claim(
            "a trained Bézier curve joins unaligned minima at low loss where the line has a high "
            "barrier (Garipov et al. 2018)",
            f"0.25 × unaligned linear − unaligned curve barrier ({steps[-1]} steps) > 0 "
            "(paired by seed)",
            {"0.25·line − curve": _paired_diff(v["none", "linear_train"], v["none", top], 0.25)},
            linear=mean_std(v["none", "linear_train"].values())[0],
            curve=mean_std(v["none", top].values())[0],
        ),
        "alignment_lowers_line": claim(
            "alignment lowers the linear barrier, and a curve lowers it further (Tatro et al. "
            "2020; Ainsworth et al. 2023)",
            "0.5 × unaligned linear − aligned linear > 0; aligned linear − aligned curve > 0 "
            "(paired by seed)",
            {
                "0.5·unaligned line − aligned line": _paired_diff(
                    v["none", "linear_train"], v["weight", "linear_train"], 0.5
                ),
                "aligned line − aligned curve": _paired_diff(
                    v["weight", "linear_train"], v["weight", top]
                ),
            },
            aligned_linear=mean_std(v["weight", "linear_train"].values())[0],
            aligned_curve=mean_std(v["weight", top].values())[0],
        ),
        "alignment_helps_curves": claim(
            "curves between aligned networks reach lower loss for the same training budget "
            "(Tatro et al. 2020)",
            f"unaligned − aligned curve barrier > 0 at every budget {steps} (paired by seed)",
            {
                f"{st} steps": _paired_diff(
                    v["none", f"bezier{st}_train"], v["weight", f"bezier{st}_train"]
                )
                for st in steps
            },
        ),
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
    fig, (ax0, ax1) = figure(2, width=4.4, height=3.4)
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
            means, err = ci_errorbar([_vals(records, al, f"bezier{s}_train") for s in steps])
            ax1.errorbar(
                steps,
                means,
                err,
                marker="o",
                ms=4,
                capsize=3,
                color=f"C{i}",
                label=f"Bézier, {LABEL[al]}",
            )
            lin = mean_std(_vals(records, al, "linear_train"))[0]
            ax1.axhline(lin, color=f"C{i}", ls="--", lw=1, label=f"line, {LABEL[al]}")
        ax0.legend(fontsize=6, loc="upper left")
        ax1.legend(fontsize=6)
        log_axis(ax1, steps)
        log_axis(ax1, axis="y")
    ax0.set(xlabel="α / t", ylabel="train loss")
    ax0.set_title("Loss along the path (first pair)", fontsize=9)
    ax1.set(xlabel="curve training steps", ylabel="train loss barrier (log)")
    ax1.set_title("Barrier vs curve budget (error bars: 95% CI)", fontsize=9)
    data = data_name(records)
    fig.suptitle(f"E7: MLPs on {data}, {len(records)} pairs", fontsize=9)
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
            f"Data: {data}; loss barriers; endpoint test accuracy {fmt(accs)}.",
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
            runtime="13 s CPU; 0.7 min wall on 2 workers, machine load ~7 (measured)",
        ),
        "medium": Setting(
            E7Config(),
            {},
            seeds=5,
            runtime="0.5 min CPU; 2.0 min wall on 2 niced workers, machine load ~10 (measured)",
        ),
        "full": Setting(
            E7Config(hidden=(512, 512, 512), epochs=40, curve_steps=(50, 200, 800, 3200)),
            {},
            seeds=5,
            runtime="11.4 min CPU; 10.9 min wall on 2 niced workers, machine load ~4 (measured)",
        ),
    },
    report=report,
    paper="Garipov et al. 2018 (Figs. 1–2); Tatro et al. 2020 (Figs. 1, 3)",
)
