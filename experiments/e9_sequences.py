"""E9 Sequences: does one permutation align whole training and pruning trajectories?

Two independent runs of a ReLU MLP on MNIST-1D per job (different init and data order),
trained together; their parameters are saved at checkpoints along training (fractions of the
run). The two final networks are then pruned iteratively — each round removes
``prune_fraction`` of every layer's remaining weights by magnitude (each network its own mask)
and fine-tunes the survivors with the pruned entries held at 0 — giving a second pair of
sequences, one network per sparsity level.

Git Re-Basin weight matching of the two *last* networks of a sequence gives one permutation;
at every step of the sequence the linear barrier between network A and network B is measured

* **unaligned**,
* after **one permutation** (the one found at the end, applied to every step),
* after **per-step** alignment (weight matching again at that step),

and, for the pruning sequence, also after the permutation of the *dense* networks (its first
step). Barriers are on the training loss (``max L − mean of the endpoints``), as in Sharma et
al.; test barriers are recorded too.

Published claim: Sharma, Kwok, Denton, Roy, Rolnick, Dziugaite (ICML 2024), "Simultaneous
Linear Connectivity of Neural Networks Modulo Permutation" (their training-trajectory and
iterative-magnitude-pruning figures): a single permutation aligns *sequences* of iteratively
trained and of iteratively pruned networks — the two networks are linearly connected at every
step of their optimisation and sparsification trajectories after one alignment.

Settings: ``small`` — 40-128-128-10, Adam 3e-3, 15 epochs, 7 checkpoints, 4 pruning rounds of 50 %
with 3 epochs of fine-tuning, 3 pairs. ``full`` — 40-512-512-512-10, 40 epochs, 10 checkpoints, 6
rounds (98.4 % sparse), 5 epochs of fine-tuning, 8 pairs. Runtimes: ``symlab experiment list``
(estimates) and the published result page (measured). ``medium`` (published) — the small setting
with 8 pairs. The full setting did not fit the shared 2-core machine the pages were made on; see
the result page.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import symlab as sl
from symlab.nn import MLP
from symlab.runner import Experiment, Report, Setting
from symlab.train import build_model

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
    paired,
    save_figure,
    split_trained,
    train_config,
)
from ._sequences import finetune_pruned, loaded, magnitude_masks, snapshot, train_trajectory

#: what each step's B is aligned with before the barrier is measured.
TRAIN_METHODS = ("none", "final", "per_step")
PRUNE_METHODS = ("none", "final", "dense", "per_step")
LABELS = {
    "none": "unaligned",
    "final": "one permutation (from the last step)",
    "dense": "one permutation (from the dense nets)",
    "per_step": "aligned at every step",
}
#: checkpoints before this fraction of training are reported but not tested (near the
#: initialisation both networks are still close to chance and the barrier is ~0).
TESTED_FROM = 0.1


@dataclass(frozen=True)
class E9Config:
    """One E9 job: a pair of runs, their training checkpoints and pruning sequences."""

    hidden: tuple[int, ...] = (128, 128)
    data: str = "mnist1d"
    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 128
    epochs: int = 15
    checkpoints: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)
    prune_rounds: int = 4
    prune_fraction: float = 0.5
    finetune_epochs: int = 3
    finetune_lr: float = 1e-3
    n_alphas: int = 13


def _barriers(
    a: nn.Module, b: nn.Module, data: Any, n_alphas: int, perms: dict[str, Any], G: Any
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for method, al in perms.items():
        other = b if al is None else al.apply_model(b)
        out[method] = {
            split: sl.connect.interpolate(a, other, data, n_alphas, split=split).barrier("loss")
            for split in ("train", "test")
        }
    return out


def _sequence(
    pairs: list[list[dict[str, torch.Tensor]]],
    template: nn.Module,
    G: sl.SymmetryGroup,
    data: Any,
    cfg: E9Config,
    extra: dict[str, Any],
    seed: int,
) -> list[dict[str, dict[str, float]]]:
    """Barriers at every step of a pair of sequences, for each alignment."""
    final = sl.align.weight_matching(pairs[-1][0], pairs[-1][1], G, seed=seed)
    out = []
    for sd_a, sd_b in pairs:
        per_step = sl.align.weight_matching(sd_a, sd_b, G, seed=seed)
        perms = {"none": None, "final": final, **extra, "per_step": per_step}
        a, b = loaded(template, sd_a), loaded(template, sd_b)
        out.append(_barriers(a, b, data, cfg.n_alphas, perms, G))
    return out


def run(cfg: E9Config, seed: int) -> dict[str, Any]:
    """Runs ``2·seed`` and ``2·seed + 1``: the training and the pruning sequences."""
    data = sl.data.load(cfg.data)
    widths = [data.input_shape[0], *cfg.hidden, data.num_classes]
    seeds = [2 * seed, 2 * seed + 1]
    models = [build_model(lambda s: MLP(widths, seed=s), s) for s in seeds]
    template = copy.deepcopy(models[0])
    steps, snaps, results = train_trajectory(models, data, cfg, seeds)
    total = train_config(cfg).total_steps(data.n_train)
    G = sl.symmetries(models[0])
    training = _sequence(snaps, template, G, data, cfg, {}, seed)
    dense = sl.align.weight_matching(snaps[-1][0], snaps[-1][1], G, seed=seed)
    masks: list[dict[str, torch.Tensor]] = [{}, {}]
    levels, sparsity, accs = [snaps[-1]], [0.0], [[r.test_acc for r in results]]
    current = models
    for rnd in range(cfg.prune_rounds):
        masks = [
            magnitude_masks(m, ms, cfg.prune_fraction) for m, ms in zip(current, masks, strict=True)
        ]
        ft_seeds = [1000 * (rnd + 1) + s for s in seeds]
        current = finetune_pruned(current, masks, data, cfg, ft_seeds)
        levels.append(snapshot(current))
        kept = sum(int(m.sum()) for m in masks[0].values())
        sparsity.append(1 - kept / sum(m.numel() for m in masks[0].values()))
        accs.append([sl.train.evaluate(m, data)[1] for m in current])
    pruning = _sequence(levels, template, G, data, cfg, {"dense": dense}, seed)
    runs = [{"test_acc": r.test_acc, "test_loss": r.test_loss} for r in results]
    return {
        "runs": runs,
        **endpoint_check(runs, data),
        "steps": steps,
        "fractions": [s / total for s in steps],
        "training": training,
        "sparsity": sparsity,
        "prune_test_acc": accs,
        "pruning": pruning,
    }


def _at(records: list[dict], seq: str, i: int, method: str, split: str = "train") -> dict:
    return by_seed(records, lambda r: r["result"][seq][i][method][split])


def _reduction_parts(
    records: list[dict], seq: str, idx: list[int], names: list[str], method: str
) -> dict[str, Any]:
    """``0.5·unaligned − method`` (paired by seed) at each step ``idx``."""
    parts = {}
    for i, name in zip(idx, names, strict=True):
        x, y = paired(_at(records, seq, i, "none"), _at(records, seq, i, method))
        parts[name] = difference_interval([0.5 * v for v in x], y, paired=True)
    return parts


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims, each with the intervals over seeds its verdict rests on."""
    if not records:
        return {}
    fr = records[0]["result"]["fractions"]
    sp = records[0]["result"]["sparsity"]
    tested = [i for i, f in enumerate(fr) if f >= TESTED_FROM]
    t_names = [f"{fr[i]:.0%} of training" for i in tested]
    p_idx = list(range(len(sp)))
    p_names = [f"sparsity {s:.1%}" for s in sp]
    matched = {}
    for i, name in zip(tested, t_names, strict=True):
        none, one, step = (_at(records, "training", i, m) for m in TRAIN_METHODS)
        seeds = sorted(set(none) & set(one) & set(step))
        matched[name] = difference_interval(
            [none[s] - one[s] for s in seeds],
            [0.75 * (none[s] - step[s]) for s in seeds],
            paired=True,
        )
    return {
        "one_perm_aligns_training": claim(
            "one permutation, found at the end of training, aligns the whole training "
            "trajectory: the barrier at every step falls to less than half the unaligned one "
            "(Sharma et al. 2024)",
            f"0.5 × unaligned − one-permutation train barrier > 0 at every checkpoint from "
            f"{TESTED_FROM:.0%} of training (paired by seed)",
            _reduction_parts(records, "training", tested, t_names, "final"),
        ),
        "one_perm_matches_per_step": claim(
            "the one permutation does nearly as well as re-aligning at every step (Sharma et "
            "al. 2024)",
            "barrier removed by the one permutation − 0.75 × that removed by per-step "
            f"alignment > 0 at every checkpoint from {TESTED_FROM:.0%} of training (paired)",
            matched,
        ),
        "one_perm_aligns_pruning": claim(
            "one permutation, found at the sparsest level, aligns the whole iterative-pruning "
            "sequence (Sharma et al. 2024)",
            "0.5 × unaligned − one-permutation train barrier > 0 at every sparsity level "
            "(paired by seed)",
            _reduction_parts(records, "pruning", p_idx, p_names, "final"),
        ),
        "dense_perm_aligns_pruning": claim(
            "the permutation of the dense networks also aligns every pruned level (observation)",
            "0.5 × unaligned − dense-permutation train barrier > 0 at every sparsity level "
            "(paired by seed)",
            _reduction_parts(records, "pruning", p_idx, p_names, "dense"),
        ),
    }


def _series(records: list[dict], seq: str, method: str, split: str = "train") -> list[list[float]]:
    n = len(records[0]["result"][seq])
    return [[r["result"][seq][i][method][split] for r in records] for i in range(n)]


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (barrier along training and along pruning) and summary of E9; pairs
    where a run did not train are left out and named."""
    records, left_out = split_trained(records)
    rows = []
    if records:
        res = records[0]["result"]
        for i, f in enumerate(res["fractions"]):
            cells = [fmt(v) for v in (_series(records, "training", m)[i] for m in TRAIN_METHODS)]
            rows.append(["training", f"{f:.0%} of training", len(records), *cells, "-"])
        for i, s in enumerate(res["sparsity"]):
            acc = fmt([a for r in records for a in r["result"]["prune_test_acc"][i]])
            cells = [
                fmt(_series(records, "pruning", m)[i])
                for m in ("none", "final", "per_step", "dense")
            ]
            rows.append(["pruning", f"sparsity {s:.1%} (test acc {acc})", len(records), *cells])
    header = ["sequence", "step", "pairs", *(f"train barrier: {LABELS[m]}" for m in TRAIN_METHODS)]
    header.append(f"train barrier: {LABELS['dense']}")
    table = markdown_table(header, rows)
    fig, (ax0, ax1) = figure(2, width=4.4, height=3.7)
    if records:
        res = records[0]["result"]
        # per-step alignment underneath (wide, light), the single permutations on top
        styles = {"none": ("C3", "-", 1.5), "final": ("C0", "-", 1.5),
                  "dense": ("C2", "--", 1.5), "per_step": ("0.7", "-", 4.0)}  # fmt: skip
        for ax, seq, xs, methods in (
            (ax0, "training", res["fractions"], TRAIN_METHODS),
            (ax1, "pruning", res["sparsity"], PRUNE_METHODS),
        ):
            for m in methods:
                means, err = ci_errorbar(_series(records, seq, m))
                color, ls, lw = styles[m]
                ax.errorbar(
                    xs,
                    means,
                    err,
                    marker="o",
                    ms=3,
                    capsize=3,
                    color=color,
                    ls=ls,
                    lw=lw,
                    zorder=1 if m == "per_step" else 2,
                    label=LABELS[m],
                )
            log_axis(ax, axis="y")
        log_axis(ax0, res["fractions"], labels=[f"{f:.0%}" for f in res["fractions"]])
        ax0.tick_params(axis="x", labelsize=7)
        fr = res["fractions"]
        untested, tested = [f for f in fr if f < TESTED_FROM], [f for f in fr if f >= TESTED_FROM]
        if untested and tested:
            edge = (max(untested) * min(tested)) ** 0.5
            ax0.axvspan(fr[0] * 0.8, edge, color="0.92", zorder=0)
        ax0.set(xlabel="fraction of training (log)", ylabel="train loss barrier A ↔ B (log)")
        ax0.set_title("Along training (shaded: not tested)", fontsize=9)
        ax1.set(xlabel="sparsity (fraction of weights pruned)", ylabel="train loss barrier (log)")
        ax1.set_title("Along iterative magnitude pruning", fontsize=9)
        handles, labels = ax1.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    data = data_name(records)
    fig.suptitle(f"E9: MLP pairs on {data}, {len(records)} pairs; error bars: 95% CI", fontsize=9)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    files = save_figure(fig, out_dir, f"e9_{setting}", layout=False)
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e9_{setting}",
        [
            f"# E9 One permutation for whole sequences ({setting})",
            "",
            "Corresponds to Sharma et al. 2024 (a single permutation aligns sequences of "
            "iteratively trained and iteratively pruned networks: their training-trajectory and "
            f"iterative-magnitude-pruning figures). Data: {data}; barriers on the training "
            "loss.",
            "",
        ],
        table + left_out_note(left_out),
        cl,
        files,
        cl.get("one_perm_aligns_training", {}).get("held"),
    )


EXPERIMENT = Experiment(
    name="e9",
    title="Sequences: one permutation for whole training and pruning trajectories",
    run=run,
    settings={
        "small": Setting(
            E9Config(),
            {},
            seeds=3,
            runtime="18 s CPU; 0.6 min wall on 2 workers, machine load ~7 (measured)",
        ),
        "medium": Setting(
            E9Config(),
            {},
            seeds=8,
            runtime="0.9 min CPU; 3.5 min wall on 2 niced workers, machine load ~10 (measured)",
        ),
        "full": Setting(
            E9Config(
                hidden=(512, 512, 512),
                epochs=40,
                checkpoints=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0),
                prune_rounds=6,
                finetune_epochs=5,
            ),
            {},
            seeds=8,
            runtime="11.3 min CPU; 9.4 min wall on 2 niced workers, machine load ~3 (measured)",
        ),
    },
    report=report,
    paper="Sharma et al. 2024 (simultaneous linear connectivity): sequences of trained and "
    "pruned networks",
)
