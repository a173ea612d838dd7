"""E2 Asymmetric nets: do W-asymmetric MLPs connect linearly without alignment?

Standard, W-asymmetric (κ = 1 and κ = 0) and σ-asymmetric (FiGLU) MLPs, two independent runs
each (different init seed and data order; the asymmetric masks, fixed weights and gates are
architecture — ``mask_seed`` — and so shared by the runs), trained on MNIST-1D. For every pair
the loss and error barriers of the straight line between them, unaligned and after Git Re-Basin
weight matching in the derived symmetry group (for the asymmetric nets that group has no
permutations left, so weight matching is the identity).

Published claims: Lim, Putterman et al. (NeurIPS 2024), "The Empirical Impact of Neural
Parameter Symmetries, or Lack Thereof", the linear-mode-connectivity experiment (their Fig. 3
and the LMC table): W-asymmetric MLPs have a near-zero unaligned barrier while standard MLPs
need alignment. Bürgin et al. (2026), MLP experiments: κ = 1 gives a near-zero unaligned
barrier, κ = 0 (the mask alone) does not.

Settings: ``small`` — MLP 40-128-128-10, LayerNorm, GELU, Adam 3e-3, 10 epochs, 2 pairs per
variant. ``full`` — Lim et al.'s shape on MNIST-1D, 40-512-512-512-10, AdamW 1e-3 (wd 0.01), batch
64, 40 epochs, 5 pairs (4 variants × 5 pairs are independent jobs for a cluster). Runtimes:
``symlab experiment list`` (estimates) and the published result page (measured). ``medium``
(published) — the small setting with 5 pairs per variant. The full setting did not fit the shared
2-core machine the pages were made on; see the result page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import symlab as sl
from symlab.nn import MLP
from symlab.runner import Experiment, Report, Setting

from ._common import (
    barriers,
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
    markdown_table,
    mean_interval,
    mean_std,
    paired,
    save_figure,
    split_trained,
    train_config,
)

VARIANTS = ("standard", "wasym_k1", "wasym_k0", "figlu")
COLORS = {"standard": "C0", "wasym_k1": "C2", "wasym_k0": "C1", "figlu": "C3"}


@dataclass(frozen=True)
class E2Config:
    """One E2 job: a pair of runs of one MLP variant.

    ``variant``: ``"standard"`` (``activation``), ``"wasym_k1"`` / ``"wasym_k0"`` (W-asymmetric
    linear layers fixing ``fixed_fraction`` of each row's inputs, with fixed values
    ``N(0, κ²)``, κ = 1 × ``kappa_profile`` or 0; Lim et al.'s MNIST preset has fractions
    64/784, 64/512, 64/512, 256/512 and κ 1, 1, 0.5, 0.25) or ``"figlu"`` (FiGLU gates).
    """

    variant: str = "standard"
    hidden: tuple[int, ...] = (128, 128)
    fixed_fraction: tuple[float, ...] = (0.1, 0.125, 0.5)
    kappa_profile: tuple[float, ...] = (1.0, 0.5, 0.25)
    activation: str = "gelu"
    norm: str | None = "layernorm"
    data: str = "mnist1d"
    optimizer: str = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    n_alphas: int = 25
    mask_seed: int = 0
    device: str = "cpu"  # where the runs train (measurements run on the CPU)


def make_model(cfg: E2Config, d_in: int, d_out: int, seed: int) -> MLP:
    """The MLP of ``cfg.variant`` with init ``seed`` (masks and gates from ``cfg.mask_seed``)."""
    widths = [d_in, *cfg.hidden, d_out]
    kw: dict[str, Any] = {"activation": cfg.activation, "norm": cfg.norm}
    if cfg.variant.startswith("wasym_k"):
        if len(cfg.fixed_fraction) != len(widths) - 1 or len(cfg.kappa_profile) != len(widths) - 1:
            raise ValueError(f"fixed_fraction and kappa_profile need {len(widths) - 1} entries")
        kappa = float(cfg.variant.removeprefix("wasym_k"))
        nf = [max(1, round(f * w)) for f, w in zip(cfg.fixed_fraction, widths, strict=False)]
        kw["asym"] = {"num_fixed": nf, "kappa": [kappa * k for k in cfg.kappa_profile]}
    elif cfg.variant == "figlu":
        kw["activation"] = "figlu"
    elif cfg.variant != "standard":
        raise ValueError(f"unknown variant {cfg.variant!r}; choose from {VARIANTS}")
    return MLP(widths, seed=seed, mask_seed=cfg.mask_seed, **kw)


def run(cfg: E2Config, seed: int) -> dict[str, Any]:
    """Train runs ``2·seed`` and ``2·seed + 1`` and measure their barriers."""
    from ._common import train_models

    data = sl.data.load(cfg.data)
    d_in, d_out = data.input_shape[0], data.num_classes
    tc = train_config(cfg)
    (a, b), stats = train_models(
        lambda s: make_model(cfg, d_in, d_out, s),
        [2 * seed, 2 * seed + 1],
        data,
        tc,
        device=cfg.device,
    )
    G = sl.symmetries(a)
    paths = barriers(a, b, data, ("none", "weight"), n_alphas=cfg.n_alphas, G=G)
    return {
        **endpoint_check(stats, data),
        "variant": cfg.variant,
        "runs": stats,
        "log10_group_order": G.log10_order,
        "permutation_factors": len(G.permutation_spec()),
        "paths": paths,
    }


def _vals(recs: list[dict], method: str, key: str) -> list[float]:
    return [r["result"]["paths"][method][key] for r in recs]


LABELS = {
    "standard": "standard",
    "wasym_k1": "W-asym κ=1",
    "wasym_k0": "W-asym κ=0",
    "figlu": "FiGLU (σ-asym)",
}


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims, each with the intervals over seeds its verdict rests on."""
    by = {k[0]: v for k, v in group_by(records, "variant").items()}
    naive = {v: _vals(r, "none", "barrier_loss") for v, r in by.items()}
    out: dict[str, dict[str, Any]] = {}
    if {"standard", "wasym_k1"} <= by.keys():
        out["lim_wasym_connects"] = claim(
            "W-asymmetric (κ=1) MLPs connect linearly without alignment; standard MLPs do not "
            "(Lim et al. 2024)",
            "unaligned loss barrier: 0.25 × standard − wasym_k1 > 0 (independent groups), and "
            "standard − 0.2 > 0",
            {
                "0.25·standard − wasym_k1": difference_interval(
                    [0.25 * v for v in naive["standard"]], naive["wasym_k1"], paired=False
                ),
                "standard − 0.2": mean_interval([v - 0.2 for v in naive["standard"]]),
            },
            wasym_k1=mean_std(naive["wasym_k1"])[0],
            standard=mean_std(naive["standard"])[0],
        )
    if "standard" in by:
        std = by["standard"]
        x, y = paired(
            by_seed(std, lambda r: r["result"]["paths"]["none"]["barrier_loss"]),
            by_seed(std, lambda r: r["result"]["paths"]["weight"]["barrier_loss"]),
        )
        out["rebasin_aligns_standard"] = claim(
            "weight matching removes most of the standard MLP's barrier (Ainsworth et al. 2023)",
            "0.5 × unaligned − aligned > 0 (paired by seed)",
            {"0.5·unaligned − aligned": difference_interval([0.5 * v for v in x], y, paired=True)},
            unaligned=mean_std(x)[0],
            aligned=mean_std(y)[0],
        )
    if {"wasym_k0", "wasym_k1"} <= by.keys():
        out["burgin_kappa"] = claim(
            "κ = 0 (mask only) does not connect without alignment, κ = 1 does (Bürgin et al. 2026)",
            "unaligned barrier κ=0 − 2 × κ=1 > 0 (independent groups)",
            {
                "κ0 − 2·κ1": difference_interval(
                    naive["wasym_k0"], [2 * v for v in naive["wasym_k1"]], paired=False
                )
            },
            kappa0=mean_std(naive["wasym_k0"])[0],
            kappa1=mean_std(naive["wasym_k1"])[0],
        )
    if {"standard", "figlu"} <= by.keys():
        out["figlu_lowers_barrier"] = claim(
            "σ-asymmetric (FiGLU) MLPs have a lower unaligned barrier than standard ones "
            "(observation; Lim et al. find W-asymmetry the effective one)",
            "unaligned barrier 0.5 × standard − figlu > 0 (independent groups)",
            {
                "0.5·standard − figlu": difference_interval(
                    [0.5 * v for v in naive["standard"]], naive["figlu"], paired=False
                )
            },
            figlu=mean_std(naive["figlu"])[0],
            standard=mean_std(naive["standard"])[0],
        )
    return out


def _mean_curve(recs: list[dict], method: str) -> tuple[list[float], list[float]]:
    paths = [r["result"]["paths"][method] for r in recs]
    n = len(paths)
    return paths[0]["alphas"], [
        sum(p["loss"][i] for p in paths) / n for i in range(len(paths[0]["loss"]))
    ]


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (loss along the path; barriers per variant) and summary of E2."""
    records, left_out = split_trained(records)
    by = {k[0]: v for k, v in group_by(records, "variant").items()}
    order = [v for v in VARIANTS if v in by]
    data = data_name(records)
    fixed = [LABELS[v] for v in order if not by[v][0]["result"]["permutation_factors"]]
    rows = []
    for v in order:
        recs = by[v]
        accs = [run["test_acc"] for r in recs for run in r["result"]["runs"]]
        rows.append(
            [
                v,
                f"{recs[0]['result']['log10_group_order']:.1f}",
                len(recs),
                fmt(accs),
                fmt(_vals(recs, "none", "barrier_loss")),
                fmt(_vals(recs, "weight", "barrier_loss")),
                fmt(_vals(recs, "none", "barrier_error")),
                fmt(_vals(recs, "weight", "barrier_error")),
            ]
        )
    header = [
        "variant",
        "log10 |G|",
        "pairs",
        "test acc",
        "loss barrier (none)",
        "loss barrier (weight)",
        "error barrier (none)",
        "error barrier (weight)",
    ]
    table = markdown_table(header, rows)
    fig, (ax0, ax1) = figure(2, width=4.6, height=3.6)
    for v in order:
        alphas, loss = _mean_curve(by[v], "none")
        ax0.plot(alphas, loss, "-", color=COLORS[v], lw=1.8, label=f"{LABELS[v]}, unaligned")
        if by[v][0]["result"]["permutation_factors"]:
            alphas, loss = _mean_curve(by[v], "weight")
            ax0.plot(
                alphas, loss, "--", color=COLORS[v], lw=1.4, label=f"{LABELS[v]}, weight matched"
            )
    ax0.set(xlabel="α", ylabel="test loss (mean over pairs)")
    ax0.set_title("Loss along the linear path", fontsize=9)
    xs = list(range(len(order)))
    for m, off, hatch in (("none", -0.2, None), ("weight", 0.2, "//")):
        means, err = ci_errorbar([_vals(by[v], m, "barrier_loss") for v in order])
        ax1.bar(
            [x + off for x in xs],
            means,
            0.4,
            yerr=err,
            capsize=3,
            color=[COLORS[v] for v in order],
            edgecolor="black",
            linewidth=0.6,
            hatch=hatch,
            label="unaligned" if m == "none" else "weight matched",
        )
    ax1.set_xticks(xs, [LABELS[v] for v in order], fontsize=7)
    ax1.set(ylabel="test loss barrier")
    ax1.set_title("Barriers (error bars: 95% CI over pairs)", fontsize=9)
    if order:
        ax1.legend(fontsize=7, loc="upper right")
        handles, labels = ax0.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    note = (
        f"\n{', '.join(fixed)}: no permutations in the derived group, so weight matching is "
        "the identity (no dashed curve)"
        if fixed
        else ""
    )
    pairs = len(records) // max(len(order), 1)
    fig.suptitle(f"E2: MLPs on {data}, {pairs} pairs per variant{note}", fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    files = save_figure(fig, out_dir, f"e2_{setting}", layout=False)
    cl = claims(records)
    main = cl.get("lim_wasym_connects", {}).get("held")
    return claims_report(
        out_dir,
        f"e2_{setting}",
        [
            f"# E2 Asymmetric nets ({setting})",
            "",
            "Corresponds to Lim, Putterman et al. 2024 (LMC experiment, Fig. 3 / LMC table) and "
            f"Bürgin et al. 2026 (MLP experiments, κ ∈ {{0, 1}}). Data: {data}; barriers on the "
            "test loss.",
            "",
        ],
        table + left_out_note(left_out),
        cl,
        files,
        main,
    )


EXPERIMENT = Experiment(
    name="e2",
    title="Asymmetric nets: unaligned vs weight-matched barriers (standard, W-asym, FiGLU)",
    run=run,
    settings={
        "small": Setting(
            E2Config(),
            {"variant": list(VARIANTS)},
            seeds=2,
            runtime="21 s CPU; 1.2 min wall on 2 workers, machine load ~7 (measured)",
        ),
        "medium": Setting(
            E2Config(),
            {"variant": list(VARIANTS)},
            seeds=5,
            runtime="0.7 min CPU; 2.8 min wall on 2 niced workers, machine load ~10 (measured)",
        ),
        "full": Setting(
            E2Config(
                hidden=(512, 512, 512),
                fixed_fraction=(0.1, 0.125, 0.125, 0.5),
                kappa_profile=(1.0, 1.0, 0.5, 0.25),
                optimizer="adamw",
                lr=1e-3,
                weight_decay=0.01,
                batch_size=64,
                epochs=40,
            ),
            {"variant": list(VARIANTS)},
            seeds=5,
            runtime="13.1 min CPU; 7.3 min wall on 2 niced workers, machine load ~2 (measured)",
        ),
    },
    report=report,
    paper="Lim et al. 2024 (LMC, Fig. 3); Bürgin et al. 2026 (MLPs, κ ∈ {0, 1})",
)
