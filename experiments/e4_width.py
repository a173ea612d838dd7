"""E4 Width and many models: two-model and three-model barriers vs width, after alignment.

Three independent runs of a ReLU MLP on the 8×8 digits per job (different init and data
order). For the three models:

* **unaligned** — the loss over the simplex of the raw models (Σ_i w_i θ_i, barycentric grid);
* **weak** linear connectivity — each of the three pairs aligned *directly* by Git Re-Basin
  weight matching (one permutation per pair); the mean and max of the three linear barriers;
* **strong** linear connectivity — one permutation per network, found jointly by iterative
  MergeMany (:func:`symlab.connect.merge`, ``method="iterative"``); the barrier over the whole
  simplex of the jointly aligned models, and its three edges.

Barriers are on the training loss (``max L − mean of the vertices``; Sharma et al. report
training loss barriers), the test loss is recorded too.

Published claims: Sharma, Kwok, Denton, Roy, Rolnick, Dziugaite (ICML 2024), "Simultaneous
Linear Connectivity of Neural Networks Modulo Permutation": barriers after alignment fall with
width (their Fig. 1/2, MLPs on MNIST), and the simplex of three jointly aligned networks has a
barrier that also falls with width (strong linear connectivity emerges; their Fig. 3),
while unaligned networks stay separated.

Settings: ``small`` — 2 hidden layers of width 32, 128, 512, Adam 1e-3, 30 epochs, simplex
resolution 6, 2 triples (about 10 s per seed on 2 cores; the CI test runs 1).
``full`` — 3 hidden layers, widths 16 … 1024, 60 epochs, resolution 10, 5 triples (about
10 min on 2 cores, measured ~2 min per seed; the 1024-wide job takes 80 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import symlab as sl
from symlab.nn import MLP
from symlab.runner import Experiment, Report, Setting

from ._common import (
    claims_report,
    endpoint_check,
    figure,
    fmt,
    group_by,
    left_out_note,
    markdown_table,
    mean_std,
    save_figure,
    split_trained,
    train_config,
    train_models,
)

PAIRS = ((0, 1), (0, 2), (1, 2))
KINDS = ("unaligned", "weak_mean", "weak_max", "strong")
LABELS = {
    "unaligned": "three-model, unaligned",
    "weak_mean": "two-model, pairwise aligned (mean)",
    "weak_max": "two-model, pairwise aligned (max)",
    "strong": "three-model, jointly aligned",
}


@dataclass(frozen=True)
class E4Config:
    """One E4 job: a triple of runs of an MLP with ``depth`` hidden layers of ``width`` units."""

    width: int = 128
    depth: int = 2
    data: str = "digits"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 30
    resolution: int = 6
    n_alphas: int = 13


def run(cfg: E4Config, seed: int) -> dict[str, Any]:
    """Train runs ``3·seed … 3·seed + 2``; measure weak (pairwise) and strong (joint) barriers."""
    data = sl.data.load(cfg.data)
    widths = [data.input_shape[0], *([cfg.width] * cfg.depth), data.num_classes]
    tc = train_config(cfg)
    models, stats = train_models(
        lambda s: MLP(widths, seed=s), [3 * seed + i for i in range(3)], data, tc
    )
    G = sl.symmetries(models[0])
    out: dict[str, Any] = {
        **endpoint_check(stats, data),
        "runs": stats,
        "log10_group_order": G.log10_order,
    }
    pairwise = {
        (i, j): sl.align.weight_matching(
            models[i].state_dict(), models[j].state_dict(), G, seed=seed
        ).apply_model(models[j])
        for i, j in PAIRS
    }
    merged = sl.connect.merge(models, G, method="iterative", seed=seed)
    joint = [al.apply_model(m) for al, m in zip(merged.alignments, models, strict=True)]
    for split in ("train", "test"):
        raw = sl.connect.simplex(models, data, resolution=cfg.resolution, split=split)
        weak = [
            sl.connect.interpolate(models[i], b, data, cfg.n_alphas, split=split).barrier()
            for (i, _), b in pairwise.items()
        ]
        strong = sl.connect.simplex(joint, data, resolution=cfg.resolution, split=split)
        edges = [
            sl.connect.interpolate(joint[i], joint[j], data, cfg.n_alphas, split=split).barrier()
            for i, j in PAIRS
        ]
        out[split] = {
            "unaligned": raw.barrier("loss"),
            "weak_pairs": weak,
            "weak_mean": sum(weak) / 3,
            "weak_max": max(weak),
            "strong": strong.barrier("loss"),
            "strong_error": strong.barrier("error"),
            "strong_edges": edges,
            "merge_rounds": merged.rounds,
        }
        if split == "train":
            out["simplex"] = {
                "weights": strong.weights.tolist(),
                "loss": strong.loss.tolist(),
                "unaligned_loss": raw.loss.tolist(),
            }
    return out


def _vals(recs: list[dict], kind: str, split: str = "train") -> list[float]:
    return [r["result"][split][kind] for r in recs]


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The qualitative claims, each with the numbers it rests on and whether it held."""
    by = {k[0]: v for k, v in sorted(group_by(records, "width").items())}
    if not by:
        return {}
    m = {w: {k: mean_std(_vals(r, k))[0] for k in KINDS} for w, r in by.items()}
    lo, hi = min(by), max(by)
    out: dict[str, dict[str, Any]] = {
        "alignment_needed": {
            "claim": "without alignment three networks are not linearly connected; joint "
            "alignment removes most of the simplex barrier (Sharma et al. 2024)",
            "test": f"strong < 0.5 × unaligned at width {hi}",
            "unaligned": m[hi]["unaligned"],
            "strong": m[hi]["strong"],
            "held": m[hi]["strong"] < 0.5 * m[hi]["unaligned"],
        }
    }
    if len(by) > 1:
        out["weak_falls_with_width"] = {
            "claim": "the two-model barrier after alignment falls with width (Sharma et al. "
            "2024, Fig. 1; Ainsworth et al. 2023)",
            "test": f"pairwise-aligned mean barrier at width {hi} < 0.5 × at width {lo}",
            "narrow": m[lo]["weak_mean"],
            "wide": m[hi]["weak_mean"],
            "held": m[hi]["weak_mean"] < 0.5 * m[lo]["weak_mean"],
        }
        out["strong_falls_with_width"] = {
            "claim": "the three-model (simplex) barrier of jointly aligned networks falls with "
            "width: strong linear connectivity emerges (Sharma et al. 2024)",
            "test": f"jointly aligned simplex barrier at width {hi} < 0.5 × at width {lo}",
            "narrow": m[lo]["strong"],
            "wide": m[hi]["strong"],
            "held": m[hi]["strong"] < 0.5 * m[lo]["strong"],
        }
    return out


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (barriers vs width; the simplex of the widest) and summary of E4."""
    records, left_out = split_trained(records)
    by = {k[0]: v for k, v in sorted(group_by(records, "width").items())}
    rows = []
    for w, recs in by.items():
        accs = [run["test_acc"] for r in recs for run in r["result"]["runs"]]
        rows.append(
            [w, len(recs), fmt(accs)]
            + [fmt(_vals(recs, k)) for k in KINDS]
            + [fmt(_vals(recs, k, "test")) for k in ("weak_mean", "strong")]
        )
    header = ["width", "triples", "test acc", *(f"train barrier: {LABELS[k]}" for k in KINDS)]
    header += ["test barrier: two-model", "test barrier: three-model"]
    table = markdown_table(header, rows)
    fig, (ax0, ax1) = figure(2)
    widths = list(by)
    for i, k in enumerate(KINDS):
        ms = [mean_std(_vals(by[w], k)) for w in widths]
        ax0.errorbar(
            widths,
            [a for a, _ in ms],
            [s for _, s in ms],
            marker="o",
            capsize=3,
            color=f"C{i}",
            label=LABELS[k],
        )
    ax0.set(
        xscale="log",
        yscale="log",
        xlabel="hidden width",
        ylabel="train loss barrier",
        title="Barriers vs width",
    )
    if widths:
        ax0.set_xticks(widths, [str(w) for w in widths])
        ax0.set_xticks([], minor=True)
        ax0.legend(fontsize=6)
        sx = by[widths[-1]][0]["result"]["simplex"]
        sl.connect.Simplex(torch.tensor(sx["weights"]), torch.tensor(sx["loss"])).plot(ax1)
        ax1.set_title(f"Train loss, jointly aligned simplex (width {widths[-1]})", fontsize=8)
    files = save_figure(fig, out_dir, f"e4_{setting}")
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e4_{setting}",
        [
            f"# E4 Width and many models ({setting})",
            "",
            "Corresponds to Sharma et al. 2024 (Fig. 1/2: barrier vs width after alignment; "
            "Fig. 3: the three-network simplex, weak vs strong linear connectivity).",
            "",
        ],
        table + left_out_note(left_out),
        cl,
        files,
        cl.get("strong_falls_with_width", {}).get("held"),
    )


EXPERIMENT = Experiment(
    name="e4",
    title="Width and many models: two- and three-model barriers vs width after alignment",
    run=run,
    settings={
        "small": Setting(
            E4Config(),
            {"width": [32, 128, 512]},
            seeds=2,
            runtime="41 s CPU; 2.5 min wall measured on 2 loaded cores (load 15)",
        ),
        "full": Setting(
            E4Config(depth=3, epochs=60, resolution=10, n_alphas=25),
            {"width": [16, 32, 64, 128, 256, 512, 1024]},
            seeds=5,
            runtime="~10 min on 2 cores (estimate, not measured)",
        ),
    },
    report=report,
    paper="Sharma et al. 2024 (simultaneous linear connectivity), Figs. 1–3",
)
