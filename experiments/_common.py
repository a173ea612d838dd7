"""Helpers shared by the experiments: training pairs, barriers, tables and figures."""

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
from symlab.train import TrainConfig, train_ensemble

__all__ = [
    "ALIGNERS",
    "barriers",
    "endpoint_check",
    "figure",
    "fmt",
    "group_by",
    "left_out_note",
    "markdown_table",
    "mean_std",
    "path_record",
    "save_figure",
    "split_trained",
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
    make: Callable[[int], nn.Module], seeds: Sequence[int], data: Any, config: TrainConfig
) -> tuple[list[nn.Module], list[dict[str, float]]]:
    """Train one model per init seed (data order from the same seed), vectorised."""
    ens = train_ensemble(make, list(seeds), data, config)
    stats = [{"test_acc": r.test_acc, "test_loss": r.test_loss} for r in ens.results]
    return list(ens.models), stats


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


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    """Save ``fig`` as PNG and PDF under ``out_dir``; close it; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=150)
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
    """Write the markdown summary (header, table, one line per claim saying whether it held,
    the figure files) and return the experiment's Report. ``keys`` picks the numbers quoted
    per claim (default: every float)."""
    from symlab.runner import Report

    lines = [*header, table, ""]
    for c in claims.values():
        items = [(k, v) for k, v in c.items() if (k in keys if keys else isinstance(v, float))]
        nums = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in items)
        verdict = "held" if c["held"] else "did NOT hold"
        lines.append(f"- **{verdict}**: {c['claim']} [{c['test']}{'; ' + nums if nums else ''}]")
    lines += ["", f"Figure: {files[0].name}, {files[1].name}"]
    summary = write_summary(out_dir, stem, "\n".join(lines) + "\n")
    return Report(table, [*files, summary], main, "\n".join(lines[len(header) + 2 :]))


def endpoint_check(stats: Sequence[Mapping[str, Any]], data: Any) -> dict[str, Any]:
    """Whether every run in ``stats`` (one ``{"test_acc", "test_loss"}`` per run, in order)
    trained, by :func:`symlab.connect.check_endpoints`' stated thresholds (classifiers: test
    accuracy ≥ chance + 0.3 × (1 − chance); regressions: R² ≥ 0.9): ``{"trained", "endpoints"}``
    with the reason, so a report leaves such pairs out instead of averaging them in."""
    from symlab.connect import check_endpoints

    if len(stats) < 2:
        raise ValueError("endpoint_check needs the stats of at least two runs")
    pairs = [(i, i + 1) for i in range(0, len(stats) - 1, 2)]
    if len(stats) % 2:
        pairs.append((len(stats) - 2, len(stats) - 1))
    trained, reasons = True, []
    for i, j in pairs:
        loss = [float(stats[i]["test_loss"]), float(stats[j]["test_loss"])]
        acc = [stats[i].get("test_acc"), stats[j].get("test_acc")]
        accuracy = None if None in acc else [float(v) for v in acc]
        ends = check_endpoints([0.0, 1.0], loss, accuracy, data=data)
        trained &= ends.trained
        if not ends.trained:
            reasons.append(f"runs {i}, {j}: {ends.reason}")
    return {"trained": bool(trained), "endpoints": "; ".join(reasons) or ends.reason}


def split_trained(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """``(trained, left_out)``: the records whose runs all trained (records without the check
    count as trained) and the others."""
    recs = list(records)
    ok = [r for r in recs if r["result"].get("trained", True)]
    return ok, [r for r in recs if not r["result"].get("trained", True)]


def left_out_note(left_out: Sequence[Mapping[str, Any]]) -> str:
    """Markdown lines naming the records left out because a run did not train ("" if none)."""
    if not left_out:
        return ""
    lines = [f"- seed {r.get('seed')}: {r['result'].get('endpoints', '')}" for r in left_out]
    return (f"\n\n{len(left_out)} job(s) left out because a run did not train "
            "(symlab.connect.check_endpoints):\n" + "\n".join(lines))  # fmt: skip
