"""E6 REPAIR: the barrier of the aligned midpoint with and without REPAIR, vs depth.

Two independent runs of a ReLU MLP without normalisation on the 8×8 digits per job, aligned by
activation matching (the correlation matching Jordan et al. use) in the group symlab derives.
At the midpoint α = ½ of the straight line between them: the loss and error barriers
(``L(½) − mean(L(0), L(1))``) of the plain average, and after REPAIR
(:func:`symlab.connect.repair` — every hidden unit's pre-activation mean and standard deviation
reset to the average of the endpoints', on training data), plus the *variance collapse*: the
standard deviation of the last hidden layer's pre-activations at the midpoint over the mean of
the endpoints' (1 = no collapse).

Published claims: Jordan, Sedghi, Saukh, Entezari, Neyshabur (ICLR 2023), "REPAIR: REnormalizing
Permuted Activations for Interpolation Repair": the aligned midpoint of networks without
normalisation suffers variance collapse that compounds with depth (their Fig. 2/3), and
REPAIR reduces the barrier (their Fig. 4/5, MLPs on MNIST: the gain grows with depth).

Settings: ``small`` — hidden width 128, depth 1, 2, 4, 6, Adam 1e-3, 30 epochs, 2 pairs
(about 4 s per seed on 2 cores). ``full`` — width 512, depth 1 … 8, 60 epochs, 5 pairs (about
10 min on 2 cores; depth 8 takes 40 s per pair).
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

MIDPOINT = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
VARIANTS = ("plain", "repair")


@dataclass(frozen=True)
class E6Config:
    """One E6 job: a pair of runs of an MLP with ``depth`` hidden layers of ``width`` units."""

    depth: int = 2
    width: int = 128
    data: str = "digits"
    align: str = "activation"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 30


def _last_hidden_std(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Mean over units of the std of the last hidden layer's pre-activations on ``x``."""
    names = sl.connect.repair_layers(model, x)
    out: list[torch.Tensor] = []
    h = model.get_submodule(names[-1]).register_forward_hook(lambda _m, _i, o: out.append(o))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return float(out[0].std(0).mean())


def run(cfg: E6Config, seed: int) -> dict[str, Any]:
    """Train runs ``2·seed`` and ``2·seed + 1``, align, and measure the midpoint barriers."""
    data = sl.data.load(cfg.data)
    widths = [data.input_shape[0], *([cfg.width] * cfg.depth), data.num_classes]
    tc = train_config(cfg)
    (a, b), stats = train_models(lambda s: MLP(widths, seed=s), [2 * seed, 2 * seed + 1], data, tc)
    G = sl.symmetries(a)
    if cfg.align == "activation":
        b = sl.align.activation_matching(a, b, data, G).apply_model(b)
    elif cfg.align == "weight":
        b = sl.align.weight_matching(a.state_dict(), b.state_dict(), G, seed=seed).apply_model(b)
    elif cfg.align != "none":
        raise ValueError(f"align must be 'activation', 'weight' or 'none', got {cfg.align!r}")
    out: dict[str, Any] = {**endpoint_check(stats, data), "runs": stats}
    for variant in VARIANTS:
        for split in ("train", "test"):
            c = sl.connect.interpolate(
                a, b, data, alphas=MIDPOINT, split=split, repair=variant == "repair"
            )
            out[f"{variant}_{split}_loss"] = c.barrier("loss")
            out[f"{variant}_{split}_error"] = c.barrier("error")
        mid = c.model_at(0.5)
        x = data.x_train
        ends = 0.5 * (_last_hidden_std(a, x) + _last_hidden_std(b, x))
        out[f"{variant}_std_ratio"] = _last_hidden_std(mid, x) / ends
    return out


def _vals(recs: list[dict], key: str) -> list[float]:
    return [r["result"][key] for r in recs]


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The qualitative claims, each with the numbers it rests on and whether it held."""
    by = {k[0]: v for k, v in sorted(group_by(records, "depth").items())}
    if not by:
        return {}
    keys = (
        "plain_train_loss",
        "repair_train_loss",
        "plain_std_ratio",
        "plain_test_loss",
        "repair_test_loss",
    )
    m = {d: {k: mean_std(_vals(r, k))[0] for k in keys} for d, r in by.items()}
    lo, hi = min(by), max(by)
    red = {d: m[d]["plain_train_loss"] - m[d]["repair_train_loss"] for d in by}
    out: dict[str, dict[str, Any]] = {
        "repair_reduces_barrier": {
            "claim": "REPAIR reduces the barrier of the aligned midpoint (Jordan et al. 2023)",
            "test": "mean train loss barrier with REPAIR < without, at every depth",
            "plain_deepest": m[hi]["plain_train_loss"],
            "repair_deepest": m[hi]["repair_train_loss"],
            "held": all(r > 0 for r in red.values()),
        },
        "repair_reduces_test_barrier": {
            "claim": "REPAIR also reduces the test loss barrier of the midpoint (observation)",
            "test": "mean test loss barrier with REPAIR < without, at every depth",
            "plain_deepest": m[hi]["plain_test_loss"],
            "repair_deepest": m[hi]["repair_test_loss"],
            "held": all(v["repair_test_loss"] < v["plain_test_loss"] for v in m.values()),
        },
        "variance_collapse": {
            "claim": "the aligned midpoint's hidden units lose variance, more so in deeper nets "
            "(Jordan et al. 2023)",
            "test": "std ratio of the last hidden layer at α = ½ < 1 at every depth, and "
            "smaller at the deepest than at the shallowest",
            "ratio_shallowest": m[lo]["plain_std_ratio"],
            "ratio_deepest": m[hi]["plain_std_ratio"],
            "held": all(v["plain_std_ratio"] < 1 for v in m.values())
            and m[hi]["plain_std_ratio"] <= m[lo]["plain_std_ratio"],
        },
    }
    if len(by) > 1:
        out["gain_grows_with_depth"] = {
            "claim": "the barrier grows with depth and REPAIR's gain with it (Jordan et al. 2023)",
            "test": f"plain barrier and reduction at depth {hi} > at depth {lo}",
            "reduction_shallowest": red[lo],
            "reduction_deepest": red[hi],
            "held": red[hi] > red[lo] and m[hi]["plain_train_loss"] > m[lo]["plain_train_loss"],
        }
    return out


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (midpoint barrier vs depth; variance collapse) and summary of E6."""
    records, left_out = split_trained(records)
    by = {k[0]: v for k, v in sorted(group_by(records, "depth").items())}
    cols = [f"{v}_{s}_{m}" for s in ("train", "test") for m in ("loss", "error") for v in VARIANTS]
    rows = []
    for d, recs in by.items():
        accs = [run["test_acc"] for r in recs for run in r["result"]["runs"]]
        rows.append(
            [
                d,
                len(recs),
                fmt(accs),
                *(fmt(_vals(recs, c)) for c in cols),
                fmt(_vals(recs, "plain_std_ratio")),
            ]
        )
    header = ["depth", "pairs", "test acc"]
    header += [
        f"{s} {m} barrier ({v})"
        for s in ("train", "test")
        for m in ("loss", "error")
        for v in VARIANTS
    ]
    table = markdown_table([*header, "std ratio at α = ½"], rows)
    fig, (ax0, ax1) = figure(2)
    depths = list(by)
    for i, (key, label) in enumerate(
        [
            ("plain_train_loss", "train, plain"),
            ("repair_train_loss", "train, REPAIR"),
            ("plain_test_loss", "test, plain"),
            ("repair_test_loss", "test, REPAIR"),
        ]
    ):
        ms = [mean_std(_vals(by[d], key)) for d in depths]
        ax0.errorbar(
            depths,
            [a for a, _ in ms],
            [s for _, s in ms],
            marker="o",
            capsize=3,
            color=f"C{i // 2}",
            ls="-" if i % 2 else "--",
            label=label,
        )
    ax0.set(xlabel="hidden layers", ylabel="loss barrier at α = ½", title="Midpoint barrier")
    for i, v in enumerate(VARIANTS):
        ms = [mean_std(_vals(by[d], f"{v}_std_ratio")) for d in depths]
        ax1.errorbar(
            depths,
            [a for a, _ in ms],
            [s for _, s in ms],
            marker="o",
            capsize=3,
            color=f"C{i}",
            label=v,
        )
    ax1.axhline(1.0, color="gray", ls=":", lw=1)
    ax1.set(
        xlabel="hidden layers",
        ylabel="std(mid) / mean std(ends)",
        title="Variance collapse, last hidden layer",
    )
    if depths:
        ax0.legend(fontsize=7)
        ax1.legend(fontsize=7)
    files = save_figure(fig, out_dir, f"e6_{setting}")
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e6_{setting}",
        [
            f"# E6 REPAIR ({setting})",
            "",
            "Corresponds to Jordan et al. 2023 (Figs. 2–3: variance collapse; Figs. 4–5: barrier "
            "with and without REPAIR for MLPs of increasing depth).",
            "",
        ],
        table + left_out_note(left_out),
        cl,
        files,
        cl.get("repair_reduces_barrier", {}).get("held"),
    )


EXPERIMENT = Experiment(
    name="e6",
    title="REPAIR: aligned-midpoint barrier with and without REPAIR vs depth (MLPs, no BN)",
    run=run,
    settings={
        "small": Setting(
            E6Config(),
            {"depth": [1, 2, 4, 6]},
            seeds=2,
            runtime="23 s CPU; 1.5 min wall measured on 2 loaded cores (load 20–22)",
        ),
        "full": Setting(
            E6Config(width=512, epochs=60),
            {"depth": [1, 2, 3, 4, 6, 8]},
            seeds=5,
            runtime="~10 min on 2 cores (estimate, not measured)",
        ),
    },
    report=report,
    paper="Jordan et al. 2023 (REPAIR), Figs. 2–5",
)
