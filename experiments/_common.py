"""Helpers shared by the experiments: training pairs, barriers, claims with confidence
intervals over seeds, tables and figures.

Every claim's verdict rests on :mod:`symlab.runner.stats`: the claim is written as quantities
that must be positive (e.g. ``0.5·naive − aligned`` per seed), each with a 95 % percentile
bootstrap interval over seeds; it *held* when every interval lies above 0, *failed* when one
lies below, and is *inconclusive* otherwise (see :func:`claim`). Figures draw the same
intervals as error bars (:func:`ci_errorbar`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

import symlab as sl
from symlab.runner.stats import (
    CONFIDENCE,
    N_RESAMPLES,
    Interval,
    combine_verdicts,
    difference_interval,
    mean_interval,
    slope_interval,
)
from symlab.train import TrainConfig, train_ensemble

__all__ = [
    "ALIGNERS",
    "STATS_NOTE",
    "barriers",
    "by_seed",
    "ci_errorbar",
    "claim",
    "data_name",
    "difference_interval",
    "exact_claim",
    "figure",
    "fmt",
    "group_by",
    "log_axis",
    "markdown_table",
    "mean_interval",
    "mean_std",
    "paired",
    "path_record",
    "save_figure",
    "slope_interval",
    "train_models",
    "write_summary",
]


def train_config(cfg: Any) -> TrainConfig:
    """The :class:`TrainConfig` of an experiment config: every field the two share by name
    (optimizer, lr, weight_decay, momentum, schedule, batch_size, epochs, …), no progress bar."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in known}
    return TrainConfig(**{**shared, "progress": False})


def train_models(
    make: Callable[[int], nn.Module],
    seeds: Sequence[int],
    data: Any,
    config: TrainConfig,
    device: str = "cpu",
) -> tuple[list[nn.Module], list[dict[str, float]]]:
    """Train one model per init seed (data order from the same seed), vectorised, on
    ``device``; the trained models come back on the CPU, where the measurements run."""
    ens = train_ensemble(make, list(seeds), data, config, device=device)
    stats = [{"test_acc": r.test_acc, "test_loss": r.test_loss} for r in ens.results]
    return [m.to("cpu") for m in ens.models], stats


def _align(method: str, a: nn.Module, b: nn.Module, data: Any, G: sl.SymmetryGroup) -> nn.Module:
    if method == "none":
        return b
    if method == "weight":
        return sl.align.weight_matching(a.state_dict(), b.state_dict(), G, seed=0).apply_model(b)
    if method == "activation":
        return sl.align.activation_matching(a, b, data, G).apply_model(b)
    raise ValueError(f"unknown alignment {method!r}; choose from {ALIGNERS}")


ALIGNERS = ("none", "weight", "activation")


def path_record(curve: sl.connect.Curve) -> dict[str, Any]:
    """The numbers of a linear path: α, loss, accuracy and the named barriers."""
    out: dict[str, Any] = {
        "alphas": [round(float(a), 6) for a in curve.alphas],
        "loss": [float(v) for v in curve.loss],
        "barrier_loss": curve.barrier("loss"),
        "barrier_weighted": curve.barrier("weighted"),
    }
    if curve.accuracy is not None:
        out["accuracy"] = [float(v) for v in curve.accuracy]
        out["barrier_error"] = curve.barrier("error")
    return out


def barriers(
    a: nn.Module,
    b: nn.Module,
    data: Any,
    methods: Iterable[str] = ("none", "weight"),
    *,
    n_alphas: int = 25,
    G: sl.SymmetryGroup | None = None,
    **interp: Any,
) -> dict[str, dict[str, Any]]:
    """The linear path from ``a`` to ``b`` after each alignment method, as :func:`path_record`."""
    G = sl.symmetries(a, data.x_train[:2]) if G is None else G
    out = {}
    for m in methods:
        curve = sl.connect.interpolate(a, _align(m, a, b, data, G), data, n_alphas, **interp)
        out[m] = path_record(curve)
    return out


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(values: Iterable[float], digits: int = 3) -> str:
    m, s = mean_std(values)
    return "nan" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def group_by(records: Iterable[Mapping[str, Any]], *keys: str) -> dict[tuple, list[dict]]:
    """Records grouped by config values ``keys`` (in first-seen order)."""
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[tuple(r["config"][k] for k in keys)].append(r)
    return dict(out)


def _cell(value: Any) -> str:
    """A table cell: pipes escaped (``log10 |G|`` would split the cell), no line breaks."""
    return " ".join(str(value).split()).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub/Python-Markdown table; every row must have as many cells as ``header``."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a table row has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def save_figure(fig: Any, out_dir: Path, stem: str, *, layout: bool = True) -> list[Path]:
    """Save ``fig`` as PNG and PDF under ``out_dir`` (``layout``: tight layout first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    if layout:
        fig.tight_layout()
    for p in paths:  # 100 dpi keeps a PNG near 60 KB (the docs publish them); the PDF is vector
        fig.savefig(p, dpi=100)
    return paths


def write_summary(out_dir: Path, stem: str, text: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.md"
    path.write_text(text)
    return path


def figure(ncols: int = 2, width: float = 4.2, height: float = 3.2) -> tuple[Any, Any]:
    """A figure with one row of ``ncols`` axes, drawn off-screen (Agg; no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


STATS_NOTE = (
    f"Verdicts: each claim is written as quantities that must be positive, each with a "
    f"{CONFIDENCE:.0%} percentile bootstrap interval over seeds ({N_RESAMPLES} resamples, "
    "seeded); a claim **held** when every interval lies above 0, **did NOT hold** when one lies "
    "below 0, and is **inconclusive** otherwise. Tables: mean ± standard deviation over seeds; "
    f"figure error bars: {CONFIDENCE:.0%} bootstrap interval of the mean."
)


def by_seed(records: Iterable[Mapping[str, Any]], value: Callable[[dict], float]) -> dict:
    """``{seed: value(record)}`` of records (one job per seed)."""
    return {int(r["seed"]): float(value(r)) for r in records}  # type: ignore[arg-type]


def paired(x: Mapping[int, float], y: Mapping[int, float]) -> tuple[list[float], list[float]]:
    """The values of the seeds present in both ``x`` and ``y``, in seed order."""
    seeds = sorted(set(x) & set(y))
    return [x[s] for s in seeds], [y[s] for s in seeds]


def claim(text: str, test: str, parts: Mapping[str, Interval], **numbers: Any) -> dict[str, Any]:
    """A claim that holds when every interval of ``parts`` lies above 0 (see the module
    docstring); ``numbers`` are quoted beside it."""
    verdict = combine_verdicts(iv.verdict() for iv in parts.values())
    return {
        "claim": text,
        "test": test,
        "intervals": {k: iv.as_dict() for k, iv in parts.items()},
        "verdict": verdict,
        "held": verdict == "held",
        **numbers,
    }


def exact_claim(text: str, test: str, held: bool, **numbers: Any) -> dict[str, Any]:
    """A claim checked exactly in every job (no sampling error: held or failed)."""
    verdict = "held" if held else "failed"
    return {"claim": text, "test": test, "verdict": verdict, "held": held, "exact": True, **numbers}


def ci_errorbar(values_per_x: Sequence[Sequence[float]]) -> tuple[list[float], list[list[float]]]:
    """Means and asymmetric error bars (the bootstrap interval of the mean) for ``errorbar``."""
    means, lo, hi = [], [], []
    for vals in values_per_x:
        iv = mean_interval(vals)
        means.append(iv.estimate)
        lo.append(max(iv.estimate - iv.low, 0.0))
        hi.append(max(iv.high - iv.estimate, 0.0))
    return means, [lo, hi]


def log_axis(
    ax: Any, values: Sequence[float] | None = None, axis: str = "x", labels: Sequence[str] = ()
) -> None:
    """A log axis with readable labels: one plain label per measured value (``values``,
    optionally ``labels``), or, without ``values``, labels at 1-2-5 steps; never the
    overlapping ``3×10¹4×10¹`` minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    if values is not None:
        names = list(labels) or [f"{v:g}" for v in values]
        getattr(ax, f"set_{axis}ticks")(list(values), names)
        target.set_minor_locator(NullLocator())
    else:
        target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


DATA_NAMES = {"mnist1d": "MNIST-1D", "digits": "8×8 digits (scikit-learn)"}


def data_name(records: Sequence[Mapping[str, Any]]) -> str:
    """The readable name of the data set the records were trained on."""
    if not records:
        return "-"
    key = str(records[0]["config"].get("data", "-"))
    return DATA_NAMES.get(key, key)


def _claim_line(c: Mapping[str, Any], keys: Sequence[str] | None) -> str:
    label = {"held": "held", "failed": "did NOT hold", "inconclusive": "inconclusive"}
    verdict = c.get("verdict", "held" if c["held"] else "failed")
    parts = [f"{k}: {Interval(**iv).text()}" for k, iv in c.get("intervals", {}).items()]
    items = [
        (k, v)
        for k, v in c.items()
        if k not in ("held", "verdict", "intervals", "claim", "test", "exact")
        and (k in keys if keys else isinstance(v, float))
    ]
    parts += [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in items]
    detail = f"test: {c['test']}" + ("; " + "; ".join(parts) if parts else "")
    return f"- **{label[verdict]}**: {c['claim']} [{detail}]"


def claims_report(
    out_dir: Path,
    stem: str,
    header: Sequence[str],
    table: str,
    claims: Mapping[str, Mapping[str, Any]],
    files: list[Path],
    main: bool | None,
    keys: Sequence[str] | None = None,
) -> Any:
    """Write the markdown summary (header, table, one line per claim with its verdict and
    intervals, the statistics used, the figure files) and return the experiment's Report.
    ``keys`` picks the extra numbers quoted per claim (default: every float)."""
    from symlab.runner import Report

    lines = [*header, table, ""]
    lines += [_claim_line(c, keys) for c in claims.values()]
    figures = [f.name for f in files if f.suffix in (".png", ".pdf")]
    lines += ["", STATS_NOTE, "", f"Figure: {', '.join(figures)}"]
    summary = write_summary(out_dir, stem, "\n".join(lines) + "\n")
    return Report(table, [*files, summary], main, "\n".join(lines[len(header) + 2 :]))
