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

Settings: ``small`` — hidden width 128, depth 1, 2, 4, 6, Adam 1e-3, 30 epochs, 2 pairs. ``full`` —
width 512, depth 1 … 8, 60 epochs, 5 pairs. Runtimes: ``symlab experiment list`` (estimates) and
the published result page (measured). ``medium`` (published) — the small setting with 5 pairs per
depth. The full setting did not fit the shared 2-core machine the pages were made on; see the
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
    device: str = "cpu"  # where the runs train (measurements run on the CPU)


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
    (a, b), stats = train_models(
        lambda s: MLP(widths, seed=s), [2 * seed, 2 * seed + 1], data, tc, device=cfg.device
    )
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


def _by_depth(records: list[dict[str, Any]]) -> dict[int, list[dict]]:
    return {k[0]: v for k, v in sorted(group_by(records, "depth").items())}


def _gain(recs: list[dict], split: str = "train") -> list[float]:
    return [r["result"][f"plain_{split}_loss"] - r["result"][f"repair_{split}_loss"] for r in recs]


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims, each with the intervals over seeds its verdict rests on."""
    by = _by_depth(records)
    if not by:
        return {}
    lo, hi = min(by), max(by)
    out: dict[str, dict[str, Any]] = {}
    for key, split, text in (
        (
            "repair_reduces_barrier",
            "train",
            "REPAIR reduces the barrier of the aligned midpoint (Jordan et al. 2023)",
        ),
        (
            "repair_reduces_test_barrier",
            "test",
            "REPAIR also reduces the test loss barrier of the midpoint (observation)",
        ),
    ):
        out[key] = claim(
            text,
            f"{split} loss barrier without − with REPAIR > 0 at every depth (paired: same pair)",
            {f"depth {d}": mean_interval(_gain(recs, split)) for d, recs in by.items()},
            plain_deepest=mean_std(_vals(by[hi], f"plain_{split}_loss"))[0],
            repair_deepest=mean_std(_vals(by[hi], f"repair_{split}_loss"))[0],
        )
    parts = {
        f"1 − ratio, depth {d}": mean_interval([1 - v for v in _vals(recs, "plain_std_ratio")])
        for d, recs in by.items()
    }
    if len(by) > 1:
        parts[f"ratio depth {lo} − depth {hi}"] = difference_interval(
            _vals(by[lo], "plain_std_ratio"), _vals(by[hi], "plain_std_ratio"), paired=False
        )
    out["variance_collapse"] = claim(
        "the aligned midpoint's hidden units lose variance, more so in deeper nets (Jordan et "
        "al. 2023)",
        "1 − std ratio of the last hidden layer at α = ½ > 0 at every depth; ratio at the "
        "shallowest − at the deepest > 0 (independent groups)",
        parts,
        ratio_shallowest=mean_std(_vals(by[lo], "plain_std_ratio"))[0],
        ratio_deepest=mean_std(_vals(by[hi], "plain_std_ratio"))[0],
    )
    if len(by) > 1:
        out["gain_grows_with_depth"] = claim(
            "the barrier grows with depth and REPAIR's gain with it (Jordan et al. 2023)",
            f"plain train barrier and REPAIR's reduction at depth {hi} − at depth {lo} > 0 "
            "(independent groups)",
            {
                "plain barrier": difference_interval(
                    _vals(by[hi], "plain_train_loss"),
                    _vals(by[lo], "plain_train_loss"),
                    paired=False,
                ),
                "reduction": difference_interval(_gain(by[hi]), _gain(by[lo]), paired=False),
            },
            reduction_shallowest=mean_std(_gain(by[lo]))[0],
            reduction_deepest=mean_std(_gain(by[hi]))[0],
        )
    return out


#: one colour per variant, one line style and marker per split: every legend entry differs.
STYLE = {"plain": "C3", "repair": "C2"}
SPLIT = {"train": ("-", "o"), "test": ("--", "s")}
NAME = {"plain": "plain average", "repair": "REPAIR"}


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (midpoint barrier vs depth; variance collapse) and summary of E6."""
    records, left_out = split_trained(records)
    by = _by_depth(records)
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
    fig, (ax0, ax1) = figure(2, width=4.4, height=3.4)
    depths = list(by)
    for v in VARIANTS:
        for split, (ls, marker) in SPLIT.items():
            means, err = ci_errorbar([_vals(by[d], f"{v}_{split}_loss") for d in depths])
            ax0.errorbar(
                depths,
                means,
                err,
                marker=marker,
                ms=4,
                capsize=3,
                color=STYLE[v],
                ls=ls,
                label=f"{NAME[v]}, {split}",
            )
        means, err = ci_errorbar([_vals(by[d], f"{v}_std_ratio") for d in depths])
        ax1.errorbar(depths, means, err, marker="o", ms=4, capsize=3, color=STYLE[v], label=NAME[v])
    ax0.axhline(0.0, color="gray", ls=":", lw=1)
    ax0.set(xlabel="hidden layers", ylabel="loss barrier at α = ½")
    ax0.set_title("Midpoint barrier (error bars: 95% CI)", fontsize=9)
    ax1.axhline(1.0, color="gray", ls=":", lw=1)
    ax1.set(xlabel="hidden layers", ylabel="std(mid) / mean std(ends)")
    ax1.set_title("Variance collapse, last hidden layer", fontsize=9)
    if depths:
        ax0.set_xticks(depths)
        ax1.set_xticks(depths)
        ax0.legend(fontsize=7)
        ax1.legend(fontsize=7)
    data = data_name(records)
    per = len(records) // max(len(by), 1)
    fig.suptitle(
        f"E6: aligned MLPs without normalisation on {data}, {per} pairs per depth", fontsize=9
    )
    files = save_figure(fig, out_dir, f"e6_{setting}")
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e6_{setting}",
        [
            f"# E6 REPAIR ({setting})",
            "",
            "Corresponds to Jordan et al. 2023 (Figs. 2–3: variance collapse; Figs. 4–5: barrier "
            f"with and without REPAIR for MLPs of increasing depth). Data: {data}.",
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
            runtime="9 s CPU; 0.6 min wall on 2 workers, machine load ~7 (measured)",
        ),
        "medium": Setting(
            E6Config(),
            {"depth": [1, 2, 4, 6]},
            seeds=5,
            runtime="0.3 min CPU; 2.0 min wall on 2 niced workers, machine load ~10 (measured)",
        ),
        "full": Setting(
            E6Config(width=512, epochs=60),
            {"depth": [1, 2, 3, 4, 6, 8]},
            seeds=5,
            runtime="7.3 min CPU; 8.3 min wall on 2 niced workers, machine load ~4 (measured)",
        ),
    },
    report=report,
    paper="Jordan et al. 2023 (REPAIR), Figs. 2–5",
)
