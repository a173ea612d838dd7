"""E4 Width and many models: two-model and three-model barriers vs width, after alignment.

Three independent runs of a ReLU MLP on the 8×8 digits per job (different init and data
order). For the three models:

* **unaligned** — the loss over the simplex of the raw models (Σ_i w_i θ_i, barycentric grid);
* **weak** linear connectivity — each of the three pairs aligned *directly* by Git Re-Basin
  weight matching (one permutation per pair); the mean and max of the three linear barriers;
* **strong** linear connectivity — one permutation per network; the barrier over the whole
  simplex of the aligned models, and its three edges, for three ways of finding the
  permutations: every model aligned to model 0 (*reference*), *joint* alignment
  (:func:`symlab.align.joint_alignment`: each model re-aligned to the mean of the others until
  no permutation changes, started from the reference alignment, so its joint objective
  ``Σ_{i<j} ⟨P_i θ_i, P_j θ_j⟩`` is never lower) and Git Re-Basin's *MergeMany* (the same
  ascent started from the unaligned models).

Barriers are on the training loss (``max L − mean of the vertices``; Sharma et al. report
training loss barriers), the test loss is recorded too.

Published claims: Sharma, Kwok, Denton, Roy, Rolnick, Dziugaite (ICML 2024), "Simultaneous
Linear Connectivity of Neural Networks Modulo Permutation": barriers after alignment fall with
width (their Fig. 1/2, MLPs on MNIST), and the simplex of three jointly aligned networks has a
barrier that also falls with width (strong linear connectivity emerges; their Fig. 3),
while unaligned networks stay separated.

Settings: ``small`` — 2 hidden layers of width 32, 128, 512, Adam 1e-3, 30 epochs, simplex
resolution 6, 2 triples per width (the CI test runs 1). ``full`` — 3 hidden layers, widths 16 …
1024, 60 epochs, resolution 10, 5 triples. Runtimes: ``symlab experiment list`` (estimates) and the
published result page (measured). ``medium`` (published) — the small setting with 5 triples per
width. The full setting did not fit the shared 2-core machine the pages were made on; see the
result page.
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
    by_seed,
    ci_errorbar,
    claim,
    claims_report,
    data_name,
    difference_interval,
    endpoint_check,
    figure,
    fmt,
    group_by,
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

PAIRS = ((0, 1), (0, 2), (1, 2))
#: three-model alignments compared: to model 0, joint from there, MergeMany from the identity.
STRONG = ("reference", "joint", "mergemany")
KINDS = ("unaligned", "weak_mean", "weak_max", *(f"strong_{k}" for k in STRONG))
LABELS = {
    "unaligned": "three-model, unaligned",
    "weak_mean": "two-model, pairwise aligned (mean)",
    "weak_max": "two-model, pairwise aligned (max)",
    "strong_reference": "three-model, aligned to model 0",
    "strong_joint": "three-model, joint (from reference)",
    "strong_mergemany": "three-model, MergeMany (from identity)",
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
    device: str = "cpu"  # where the runs train (measurements run on the CPU)


def _three_model_alignments(
    models: list[torch.nn.Module], G: sl.SymmetryGroup, seed: int
) -> tuple[dict[str, list[torch.nn.Module]], dict[str, Any]]:
    """The three models moved by each scheme of :data:`STRONG`, and the joint objectives."""
    sds = [m.state_dict() for m in models]
    joint = sl.align.joint_alignment(sds, G, init="reference", seed=seed)
    merge_many = sl.align.joint_alignment(sds, G, init="identity", seed=seed)
    reference = [
        sl.align.weight_matching(sds[0], sd, G, seed=seed).apply_model(m)
        for sd, m in zip(sds, models, strict=True)
    ]
    moved = {
        "reference": reference,
        "joint": joint.apply_models(models),
        "mergemany": merge_many.apply_models(models),
    }
    info = {
        "objective_reference": joint.trace[0],
        "objective_joint": joint.objective,
        "objective_mergemany": merge_many.objective,
        "rounds_joint": joint.rounds,
        "rounds_mergemany": merge_many.rounds,
        "changes_joint": joint.changes,
        "changes_mergemany": merge_many.changes,
    }
    return moved, info


def run(cfg: E4Config, seed: int) -> dict[str, Any]:
    """Train runs ``3·seed … 3·seed + 2``; measure weak (pairwise) and strong (simplex) barriers
    after reference, joint and MergeMany alignment."""
    data = sl.data.load(cfg.data)
    widths = [data.input_shape[0], *([cfg.width] * cfg.depth), data.num_classes]
    tc = train_config(cfg)
    models, stats = train_models(
        lambda s: MLP(widths, seed=s), [3 * seed + i for i in range(3)], data, tc, device=cfg.device
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
    moved, out["alignment"] = _three_model_alignments(models, G, seed)
    for split in ("train", "test"):
        raw = sl.connect.simplex(models, data, resolution=cfg.resolution, split=split)
        weak = [
            sl.connect.interpolate(models[i], b, data, cfg.n_alphas, split=split).barrier()
            for (i, _), b in pairwise.items()
        ]
        res: dict[str, Any] = {
            "unaligned": raw.barrier("loss"),
            "weak_pairs": weak,
            "weak_mean": sum(weak) / 3,
            "weak_max": max(weak),
        }
        for kind, ms in moved.items():
            grid = sl.connect.simplex(ms, data, resolution=cfg.resolution, split=split)
            res[f"strong_{kind}"] = grid.barrier("loss")
            res[f"strong_{kind}_error"] = grid.barrier("error")
            res[f"strong_{kind}_edges"] = [
                sl.connect.interpolate(ms[i], ms[j], data, cfg.n_alphas, split=split).barrier()
                for i, j in PAIRS
            ]
            if split == "train" and kind == "joint":
                out["simplex"] = {
                    "weights": grid.weights.tolist(),
                    "loss": grid.loss.tolist(),
                    "unaligned_loss": raw.loss.tolist(),
                }
        out[split] = res
    return out


def _vals(recs: list[dict], kind: str, split: str = "train") -> list[float]:
    return [r["result"][split][kind] for r in recs]


def _by_width(records: list[dict[str, Any]]) -> dict[int, list[dict]]:
    return {k[0]: v for k, v in sorted(group_by(records, "width").items())}


def _seeded(recs: list[dict], kind: str) -> dict[int, float]:
    return by_seed(recs, lambda r: r["result"]["train"][kind])


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims, each with the intervals over seeds its verdict rests on."""
    by = _by_width(records)
    if not by:
        return {}
    lo, hi = min(by), max(by)
    x, y = paired(_seeded(by[hi], "unaligned"), _seeded(by[hi], "strong_joint"))
    out: dict[str, dict[str, Any]] = {
        "alignment_needed": claim(
            "without alignment three networks are not linearly connected; joint alignment "
            "removes most of the simplex barrier (Sharma et al. 2024)",
            f"0.5 × unaligned − jointly aligned simplex train barrier > 0 at width {hi} "
            "(paired by seed)",
            {f"width {hi}": difference_interval([0.5 * v for v in x], y, paired=True)},
            unaligned=mean_std(x)[0],
            strong=mean_std(y)[0],
        )
    }
    if len(by) > 1:
        for key, kind, text in (
            (
                "weak_falls_with_width",
                "weak_mean",
                "the two-model barrier after alignment falls with width (Sharma et al. 2024, "
                "Fig. 1; Ainsworth et al. 2023)",
            ),
            (
                "strong_falls_with_width",
                "strong_joint",
                "the three-model (simplex) barrier of jointly aligned networks falls with "
                "width: strong linear connectivity emerges (Sharma et al. 2024)",
            ),
        ):
            narrow, wide = _vals(by[lo], kind), _vals(by[hi], kind)
            out[key] = claim(
                text,
                f"0.5 × train barrier at width {lo} − at width {hi} > 0 (independent groups)",
                {
                    f"0.5·w{lo} − w{hi}": difference_interval(
                        [0.5 * v for v in narrow], wide, paired=False
                    )
                },
                narrow=mean_std(narrow)[0],
                wide=mean_std(wide)[0],
            )
    parts = {}
    for w, recs in by.items():
        x, y = paired(_seeded(recs, "strong_reference"), _seeded(recs, "strong_joint"))
        parts[f"width {w}"] = difference_interval(x, y, paired=True)
    out["joint_beats_reference"] = claim(
        "true joint (MergeMany) alignment gives a lower simplex barrier than aligning both "
        "models to a reference (observation; Ainsworth et al. 2023 MergeMany, Sharma et al. "
        "2024)",
        "reference − joint simplex train barrier > 0 at every width (paired by seed)",
        parts,
    )
    return out


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (barriers vs width; the simplex of the widest) and summary of E4."""
    records, left_out = split_trained(records)
    by = _by_width(records)
    rows = []
    for w, recs in by.items():
        accs = [run["test_acc"] for r in recs for run in r["result"]["runs"]]
        gain = [
            r["result"]["alignment"]["objective_joint"]
            - r["result"]["alignment"]["objective_reference"]
            for r in recs
        ]
        rows.append(
            [w, len(recs), fmt(accs)]
            + [fmt(_vals(recs, k)) for k in KINDS]
            + [fmt(_vals(recs, k, "test")) for k in ("weak_mean", "strong_joint")]
            + [fmt(gain, 1)]
        )
    header = ["width", "triples", "test acc", *(f"train barrier: {LABELS[k]}" for k in KINDS)]
    header += ["test barrier: two-model", "test barrier: three-model joint"]
    header += ["joint − reference objective Σ⟨θi, θj⟩"]
    table = markdown_table(header, rows)
    fig, (ax0, ax1) = figure(2, width=4.6, height=3.6)
    widths = list(by)
    shown = ("unaligned", "weak_mean", "strong_reference", "strong_joint", "strong_mergemany")
    styles = {"strong_reference": ":", "strong_mergemany": "--"}
    for i, k in enumerate(shown):
        means, err = ci_errorbar([_vals(by[w], k) for w in widths])
        ax0.errorbar(
            widths,
            means,
            err,
            marker="o",
            ms=4,
            capsize=3,
            ls=styles.get(k, "-"),
            color=f"C{i}",
            label=LABELS[k],
        )
    ax0.set(yscale="log", xlabel="hidden width", ylabel="train loss barrier (log)")
    ax0.set_title("Barriers vs width (error bars: 95% CI)", fontsize=9)
    if widths:
        log_axis(ax0, widths)
        handles, labels = ax0.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
        sx = by[widths[-1]][0]["result"]["simplex"]
        sl.connect.Simplex(torch.tensor(sx["weights"]), torch.tensor(sx["loss"])).plot(ax1)
        ax1.set_title(
            f"Train loss, jointly aligned simplex (width {widths[-1]})", fontsize=9, pad=14
        )
    data = data_name(records)
    per = len(records) // max(len(by), 1)
    fig.suptitle(f"E4: MLPs on {data}, {per} triples per width", fontsize=9)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    files = save_figure(fig, out_dir, f"e4_{setting}", layout=False)
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e4_{setting}",
        [
            f"# E4 Width and many models ({setting})",
            "",
            "Corresponds to Sharma et al. 2024 (Fig. 1/2: barrier vs width after alignment; "
            "Fig. 3: the three-network simplex, weak vs strong linear connectivity). Data: "
            f"{data}; barriers on the training loss. Three-model alignments: every model "
            "aligned to model 0 (reference), joint alignment started there "
            "(`symlab.align.joint_alignment`), and Git Re-Basin's MergeMany from the identity.",
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
            runtime="47 s CPU; 2.0 min wall on 2 workers, machine load ~7 (measured)",
        ),
        "medium": Setting(
            E4Config(),
            {"width": [32, 128, 512]},
            seeds=5,
            runtime="1.8 min CPU; 6.3 min wall on 2 niced workers, machine load ~10 (measured)",
        ),
        "full": Setting(
            E4Config(depth=3, epochs=60, resolution=10, n_alphas=25),
            {"width": [16, 32, 64, 128, 256, 512, 1024]},
            seeds=5,
            runtime="21.8 min CPU; 12.6 min wall on 2 niced workers, machine load ~2 (measured)",
        ),
    },
    report=report,
    paper="Sharma et al. 2024 (simultaneous linear connectivity), Figs. 1–3",
)
