"""E5 Spawning: the barrier between two children forked at step k, vs k.

One run of a ReLU MLP on MNIST-1D is trained to step ``k`` (SGD with momentum, a large
learning rate with cosine decay); there it is forked (:func:`symlab.train.spawn`) into two
children that share the weights and optimizer state but see different data orders from step
``k`` on, and both are trained to the end of the schedule. The children are compared *without
alignment*: the test error barrier (Frankle et al.'s instability) and the train and test loss
barriers of the straight line between them.

Published claim: Frankle, Dziugaite, Roy, Carbin (ICML 2020), "Linear Mode Connectivity and the
Lottery Ticket Hypothesis" (their Fig. 3, instability vs k): children forked at initialisation
are separated by a barrier; past a *stability point* early in training (a small fraction of the
run) the children are linearly connected — the error barrier falls below 2 percentage points.
Frankle et al. find LeNet on MNIST stable already at k = 0; this setting (MNIST-1D, SGD at a
large learning rate) is chosen to be unstable at initialisation, like their CIFAR nets.

Settings: ``small`` — 40-128-128-10, SGD lr 0.3 (cosine), momentum 0.9, batch 128, 15 epochs (480
steps), k ∈ {0, 4, 16, 32, 64, 128, 256}, 2 seeds. ``full`` — hidden 512-512-512, 30 epochs (960
steps), k ∈ {0, 2, 4, 8, …, 512}, 5 seeds. Runtimes: ``symlab experiment list`` (estimates) and the
published result page (measured). ``medium`` (published) — the small setting with 5 seeds per k.
The full setting did not fit the shared 2-core machine the pages were made on; see the result page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import symlab as sl
from symlab.nn import MLP
from symlab.runner import Experiment, Report, Setting
from symlab.seeding import child_seed
from symlab.train import spawn

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
    mean_interval,
    mean_std,
    paired,
    save_figure,
    split_trained,
    train_config,
)

#: Frankle et al.'s stability threshold on the test error barrier.
STABLE = 0.02


@dataclass(frozen=True)
class E5Config:
    """One E5 job: an MLP trained to step ``k``, forked into two children trained to the end."""

    k: int = 0
    hidden: tuple[int, ...] = (128, 128)
    data: str = "mnist1d"
    optimizer: str = "sgd"
    lr: float = 0.3
    momentum: float = 0.9
    schedule: str = "cosine"
    batch_size: int = 128
    epochs: int = 15
    n_alphas: int = 25


def run(cfg: E5Config, seed: int) -> dict[str, Any]:
    """Parent from init ``seed`` trained to ``k``; children with two fresh data orders."""
    data = sl.data.load(cfg.data)
    tc = train_config(cfg)
    total = tc.total_steps(data.n_train)
    model = MLP([data.input_shape[0], *cfg.hidden, data.num_classes], seed=seed)
    sp = spawn(
        model,
        data,
        tc,
        k=min(cfg.k, total),
        data_seeds=[child_seed(seed, 1), child_seed(seed, 2)],
        parent_data_seed=child_seed(seed, 0),
    )
    a, b = sp.children
    test = sl.connect.interpolate(a, b, data, cfg.n_alphas)
    train = sl.connect.interpolate(a, b, data, cfg.n_alphas, split="train")
    runs = [{"test_acc": r.test_acc, "test_loss": r.test_loss} for r in sp.results]
    return {
        **endpoint_check(runs, data),
        "k": sp.k,
        "total_steps": total,
        "runs": runs,
        "error_barrier": test.barrier("error"),
        "test_loss_barrier": test.barrier("loss"),
        "train_loss_barrier": train.barrier("loss"),
        "alphas": [round(float(x), 6) for x in test.alphas],
        "test_error": [1.0 - float(x) for x in test.accuracy],
    }


def _by_k(records: list[dict[str, Any]]) -> dict[int, list[dict]]:
    return {k[0]: v for k, v in sorted(group_by(records, "k").items())}


def _curve(records: list[dict], key: str) -> tuple[list[int], list[tuple[float, float]]]:
    by = _by_k(records)
    return list(by), [mean_std(r["result"][key] for r in recs) for recs in by.values()]


def stability_point(records: list[dict[str, Any]]) -> int | None:
    """The smallest k from which the error barrier's 95% interval stays below 2 points
    (None: never; with one seed, the barrier itself)."""
    point = None
    for k, recs in reversed(list(_by_k(records).items())):
        if mean_interval([r["result"]["error_barrier"] for r in recs]).high >= STABLE:
            break
        point = k
    return point


def claims(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims, each with the intervals over seeds its verdict rests on."""
    by = _by_k(records)
    if not by:
        return {}
    ks = list(by)
    total = records[0]["result"]["total_steps"]
    err = {k: by_seed(recs, lambda r: r["result"]["error_barrier"]) for k, recs in by.items()}
    k0, last = ks[0], ks[-1]
    half = max((k for k in ks if k <= total / 2), default=k0)
    x, y = paired(err[k0], err[last])
    point = stability_point(records)
    return {
        "unstable_at_init": claim(
            f"children forked at k = {k0} are separated by an error barrier (Frankle et al. "
            "2020, Fig. 3, unstable networks)",
            f"test error barrier at k = {k0} − {STABLE} > 0",
            {f"k = {k0}": mean_interval([v - STABLE for v in err[k0].values()])},
        ),
        "stable_later": claim(
            "past a stability point early in training the children are linearly connected "
            "(Frankle et al. 2020)",
            f"{STABLE} − error barrier > 0 at k = {half} (≤ half the run) and at k = {last}; "
            f"0.25 × barrier at k = {k0} − at k = {last} > 0 (paired by seed)",
            {
                f"{STABLE} − barrier at k = {half}": mean_interval(
                    [STABLE - v for v in err[half].values()]
                ),
                f"{STABLE} − barrier at k = {last}": mean_interval(
                    [STABLE - v for v in err[last].values()]
                ),
                f"0.25·k{k0} − k{last}": difference_interval([0.25 * v for v in x], y, paired=True),
            },
            stability_point=point,
            fraction_of_run=None if point is None else point / total,
        ),
    }


def report(records: list[dict[str, Any]], out_dir: Path, setting: str) -> Report:
    """Table, figure (barriers vs k; error along the path) and summary of E5."""
    records, left_out = split_trained(records)
    by = _by_k(records)
    rows = []
    for k, recs in by.items():
        accs = [run["test_acc"] for r in recs for run in r["result"]["runs"]]
        vals = [[r["result"][key] for r in recs] for key in _KEYS]
        rows.append(
            [k, len(recs), fmt(accs), *(fmt(v, 4 if i == 0 else 3) for i, v in enumerate(vals))]
        )
    header = [
        "fork step k",
        "pairs",
        "test acc",
        "test error barrier",
        "test loss barrier",
        "train loss barrier",
    ]
    table = markdown_table(header, rows)
    fig, (ax0, ax1) = figure(2, width=4.4, height=3.4)
    ks = list(by)
    xs = [max(k, 1) for k in ks]  # k = 0 drawn at 1 on the log axis
    for i, key in enumerate(_KEYS):
        means, err = ci_errorbar([[r["result"][key] for r in by[k]] for k in ks])
        ax0.errorbar(
            xs, means, err, marker="o", ms=4, capsize=3, color=f"C{i}", label=key.replace("_", " ")
        )
    ax0.axhline(STABLE, color="gray", ls=":", lw=1, label="2% (stability threshold)")
    ax0.set(xlabel="fork step k", ylabel="barrier between children")
    ax0.set_title("Barrier vs fork step (error bars: 95% CI)", fontsize=9)
    if ks:
        log_axis(ax0, xs, labels=[str(k) for k in ks])
        ax0.tick_params(axis="x", labelsize=7)
    for i, (k, recs) in enumerate(by.items()):
        r = recs[0]["result"]
        ax1.plot(r["alphas"], r["test_error"], color=f"C{i}", label=f"k = {k}")
    ax1.set(xlabel="α", ylabel="test error")
    ax1.set_title("Error along the path (first seed)", fontsize=9)
    if by:
        ax0.legend(fontsize=6)
        ax1.legend(fontsize=6, ncol=2)
    data = data_name(records)
    per = len(records) // max(len(by), 1)
    fig.suptitle(f"E5: MLP on {data}, children forked at step k, {per} seeds per k", fontsize=9)
    files = save_figure(fig, out_dir, f"e5_{setting}")
    cl = claims(records)
    return claims_report(
        out_dir,
        f"e5_{setting}",
        [
            f"# E5 Spawning ({setting})",
            "",
            "Corresponds to Frankle et al. 2020 (Fig. 3: instability — the test error barrier "
            f"between children — vs the fork step k). Data: {data}.",
            "",
        ],
        table + left_out_note(left_out),
        cl,
        files,
        None if not cl else cl["unstable_at_init"]["held"] and cl["stable_later"]["held"],
        keys=("stability_point", "fraction_of_run"),
    )


_KEYS = ("error_barrier", "test_loss_barrier", "train_loss_barrier")

EXPERIMENT = Experiment(
    name="e5",
    title="Spawning: barrier between children vs fork step k (stability point)",
    run=run,
    settings={
        "small": Setting(
            E5Config(),
            {"k": [0, 4, 16, 32, 64, 128, 256]},
            seeds=2,
            runtime="18 s CPU; 1.0 min wall on 2 workers, machine load ~7 (measured)",
        ),
        "medium": Setting(
            E5Config(),
            {"k": [0, 4, 16, 32, 64, 128, 256]},
            seeds=5,
            runtime="0.5 min CPU; 2.3 min wall on 2 niced workers, machine load ~10 (measured)",
        ),
        "full": Setting(
            E5Config(hidden=(512, 512, 512), epochs=30),
            {"k": [0, 2, 4, 8, 16, 32, 64, 128, 256, 512]},
            seeds=5,
            runtime="9.8 min CPU; 14.2 min wall on 2 niced workers, machine load 4–7 (measured)",
        ),
    },
    report=report,
    paper="Frankle et al. 2020 (linear mode connectivity and the LTH), Fig. 3",
)
