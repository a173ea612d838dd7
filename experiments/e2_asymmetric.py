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

Settings: ``small`` — MLP 40-128-128-10, LayerNorm, GELU, Adam 3e-3, 10 epochs, 2 pairs
(about 20 s on 2 cores). ``full`` — Lim et al.'s shape on MNIST-1D, 40-512-512-512-10, AdamW
1e-3 (wd 0.01), batch 64, 40 epochs, 5 pairs (about 15 min on 2 cores; 4 variants × 5 pairs
are independent jobs for a cluster).
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
        lambda s: make_model(cfg, d_in, d_out, s), [2 * seed, 2 * seed + 1], data, tc
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


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The qualitative claims, each with the numbers it rests on and whether it held."""
    by = {k[0]: v for k, v in group_by(records, "variant").items()}
    naive = {v: mean_std(_vals(r, "none", "barrier_loss"))[0] for v, r in by.items()}
    wm = {v: mean_std(_vals(r, "weight", "barrier_loss"))[0] for v, r in by.items()}
    out: dict[str, dict[str, Any]] = {}
    if {"standard", "wasym_k1"} <= by.keys():
        held = naive["wasym_k1"] < 0.25 * naive["standard"] and naive["standard"] > 0.2
        out["lim_wasym_connects"] = {
            "claim": "W-asymmetric (κ=1) MLPs connect linearly without alignment; standard "
            "MLPs do not (Lim et al. 2024)",
            "test": "unaligned loss barrier: wasym_k1 < 0.25 × standard, standard > 0.2",
            "wasym_k1": naive["wasym_k1"],
            "standard": naive["standard"],
            "held": held,
        }
    if "standard" in by:
        out["rebasin_aligns_standard"] = {
            "claim": "weight matching removes most of the standard MLP's barrier (Ainsworth "
            "et al. 2023)",
            "test": "aligned < 0.5 × unaligned",
            "unaligned": naive["standard"],
            "aligned": wm["standard"],
            "held": wm["standard"] < 0.5 * naive["standard"],
        }
    if {"wasym_k0", "wasym_k1"} <= by.keys():
        out["burgin_kappa"] = {
            "claim": "κ = 0 (mask only) does not connect without alignment, κ = 1 does "
            "(Bürgin et al. 2026)",
            "test": "unaligned barrier κ=0 > 2 × κ=1",
            "kappa0": naive["wasym_k0"],
            "kappa1": naive["wasym_k1"],
            "held": naive["wasym_k0"] > 2 * naive["wasym_k1"],
        }
    if {"standard", "figlu"} <= by.keys():
        out["figlu_lowers_barrier"] = {
            "claim": "σ-asymmetric (FiGLU) MLPs have a lower unaligned barrier than standard "
            "ones (observation; Lim et al. find W-asymmetry the effective one)",
            "test": "unaligned barrier figlu < 0.5 × standard",
            "figlu": naive["figlu"],
            "standard": naive["standard"],
            "held": naive["figlu"] < 0.5 * naive["standard"],
        }
    return out


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (loss along the path; barriers per variant) and summary of E2."""
    records, left_out = split_trained(records)
    by = {k[0]: v for k, v in group_by(records, "variant").items()}
    order = [v for v in VARIANTS if v in by]
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
    fig, (ax0, ax1) = figure(2)
    for v in order:
        for i, r in enumerate(by[v]):
            for m, ls in (("none", "-"), ("weight", "--")):
                p = r["result"]["paths"][m]
                label = f"{v} ({'unaligned' if m == 'none' else 'weight matched'})"
                ax0.plot(
                    p["alphas"],
                    p["loss"],
                    ls,
                    color=COLORS[v],
                    alpha=0.8,
                    label=label if i == 0 else None,
                )
    ax0.set(xlabel="α", ylabel="test loss", title="Loss along the linear path")
    if order:
        ax0.legend(fontsize=6)
    xs = range(len(order))
    for k, (m, off) in enumerate((("none", -0.2), ("weight", 0.2))):
        ms = [mean_std(_vals(by[v], m, "barrier_loss")) for v in order]
        ax1.bar(
            [x + off for x in xs],
            [a for a, _ in ms],
            0.4,
            yerr=[s for _, s in ms],
            color=[COLORS[v] for v in order],
            alpha=1.0 - 0.45 * k,
            label="unaligned" if m == "none" else "weight matched",
        )
    ax1.set_xticks(list(xs), order, fontsize=8)
    ax1.set(ylabel="loss barrier", title="Barriers (solid: unaligned)")
    if order:
        ax1.legend(fontsize=7)
    files = save_figure(fig, out_dir, f"e2_{setting}")
    cl = claims(records)
    main = cl.get("lim_wasym_connects", {}).get("held")
    return claims_report(
        out_dir,
        f"e2_{setting}",
        [
            f"# E2 Asymmetric nets ({setting})",
            "",
            "Corresponds to Lim, Putterman et al. 2024 (LMC experiment, Fig. 3 / LMC table) and "
            "Bürgin et al. 2026 (MLP experiments, κ ∈ {0, 1}).",
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
            runtime="43 s CPU; 4.4 min wall measured on 2 loaded cores (load 11–15)",
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
            runtime="~15 min on 2 cores (estimate, not measured)",
        ),
    },
    report=report,
    paper="Lim et al. 2024 (LMC, Fig. 3); Bürgin et al. 2026 (MLPs, κ ∈ {0, 1})",
)
