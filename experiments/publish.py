"""Publish experiment results as documentation pages: one page per experiment under
``docs/results/``, and the summary table of ``docs/experiments.md``.

One command regenerates every page from a results folder (``make results-pages``)::

    python -m experiments.publish --results results --setting small

and one command runs (or resumes) an experiment's sweep at a setting and publishes it::

    python -m experiments.publish e1 --setting full --run --workers 2
    python -m experiments.publish e1 --setting full --run --scheduler tcp://HOST:8786

Each page says which published figure or claim the experiment answers, whether each claim
held (verdict and confidence intervals, failures and inconclusive claims in the same table as
successes), the figure, the results table, the settings and seeds, and the runtime measured
from the job records.
"""

from __future__ import annotations

import inspect
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

import experiments
from symlab.runner import Experiment, Interval, ResultStore, RunnerError, run_sweep
from symlab.runner.experiment import config_dict

from ._common import STATS_NOTE, markdown_table

__all__ = ["page_meta", "publish", "update_index"]

DOCS = Path(__file__).resolve().parents[1] / "docs"
VERDICT = {"held": "**held**", "failed": "**did NOT hold**", "inconclusive": "**inconclusive**"}
INDEX_START, INDEX_END = "<!-- results:start -->", "<!-- results:end -->"
META = "symlab-result"
ESTIMATE_NOTE = (
    "Runtimes marked (estimated) come from `python -m experiments.estimate NAME SETTING`: one "
    "job of the setting's largest config timed (CPU, one thread) with one training epoch, "
    "training scaled to the setting's epochs and curve steps, the other configs by parameter "
    "count, the sweep spread over two single-thread workers. On a loaded machine wall time is "
    "several times longer."
)
WARNINGS = {
    "small": "These results come from the **small** setting (few seeds, small models), not the "
    "full one; they show what the code measures at that size, and are replaced when the full "
    "setting is published.",
    "medium": "These results come from the **medium** setting: the small setting's models and "
    "training with more seeds (and, for E1, more widths), so that every verdict rests on "
    "intervals over 5–12 seeds. The full setting ({full}) was not run: on the shared 2-core "
    "machine where these pages were made (1-minute load average near 10) the sweep's two "
    "worker processes got about a quarter of one core together (measured: 68 s of CPU in 5 min "
    "of wall time on E9's full setting), so a full setting would take roughly 8× its idle "
    "estimate, over an hour each. Run it with `python -m experiments.publish {name} --setting "
    "full --run` on a larger machine or a Dask cluster and this page is replaced.",
}


def _module(exp: Experiment) -> Any:
    return sys.modules[exp.run.__module__]


def _published_claim(exp: Experiment) -> str:
    """The "Published claim(s)" paragraph of the experiment module's docstring."""
    doc = inspect.getdoc(_module(exp)) or ""
    for para in doc.split("\n\n"):
        if para.startswith("Published claim"):
            return re.sub(r"^Published claims?:?\s*", "", " ".join(para.split()))
    return exp.paper


def _small_png(src: Path, dst: Path) -> None:
    """Copy a figure as a 256-colour PNG (a plot has few colours; about 3× smaller)."""
    from PIL import Image

    with Image.open(src) as im:
        im.convert("RGB").quantize(colors=256).save(dst, optimize=True)


def _verdict(c: dict[str, Any]) -> str:
    return str(c.get("verdict") or ("held" if c.get("held") else "failed"))


def _claims_table(claims: dict[str, dict[str, Any]]) -> str:
    rows = []
    for c in claims.values():
        ivs = [f"{k}: {Interval(**iv).text()}" for k, iv in c.get("intervals", {}).items()]
        if not ivs and "verdict" not in c:
            ivs = ["(mean comparison, no interval)"]
        rows.append([VERDICT[_verdict(c)], c["claim"], c["test"], "; ".join(ivs) or "exact"])
    return markdown_table(["verdict", "claim", "test", "intervals (95%, over seeds)"], rows)


def _untested(claims: dict[str, dict[str, Any]]) -> list[str]:
    """A warning naming the claims still decided by a plain comparison of means."""
    plain = [c["claim"] for c in claims.values() if "verdict" not in c]
    if not plain:
        return []
    return [
        '!!! danger "Not yet a test over seeds"',
        f"    {len(plain)} of these claims are decided by comparing means, without an interval "
        "over seeds; their verdicts are provisional.",
        "",
    ]


def _runtime(records: list[dict[str, Any]]) -> list[str]:
    wall = sum(float(r.get("seconds", 0.0)) for r in records)
    cpu = [float(r["cpu_seconds"]) for r in records if "cpu_seconds" in r]
    start = min(float(r["started"]) for r in records)
    end = max(float(r["started"]) + float(r.get("seconds", 0.0)) for r in records)
    hosts = sorted({str(r.get("host", "?")) for r in records})
    lines = [
        f"- {len(records)} jobs; sum of job wall times {wall / 60:.1f} min, longest job "
        f"{max(float(r.get('seconds', 0.0)) for r in records):.0f} s; first start to last "
        f"finish {(end - start) / 60:.1f} min.",
    ]
    if cpu:
        lines.append(
            f"- CPU time of the jobs {sum(cpu) / 60:.1f} min (all threads; the better guide on "
            "a shared machine, where wall times are inflated by other work)."
        )
    lines.append(f"- Hosts: {', '.join(hosts)}.")
    return lines


def _settings(exp: Experiment, setting: str) -> list[str]:
    s = exp.setting(setting)
    base = config_dict(s.base)
    grids = [s.grid] if isinstance(s.grid, dict) else list(s.grid)
    swept = sorted({k for g in grids for k in g})
    rows = [[k, "swept" if k in swept else f"`{v}`"] for k, v in base.items()]
    lines = [markdown_table(["config field", f"value ({setting})"], rows), ""]
    for g in grids:
        lines.append("- grid: " + ", ".join(f"`{k}` ∈ {list(v)}" for k, v in g.items()))
    sweep = exp.sweep(setting)
    lines.append(f"- seeds: {sweep.seed_list()} ({len(sweep.jobs())} jobs)")
    others = [f"`{k}`: {v.runtime}" for k, v in exp.settings.items() if v.runtime]
    note = " " + ESTIMATE_NOTE if any("(estimated)" in o for o in others) else ""
    lines.append("- runtime of every setting: " + "; ".join(others) + "." + note)
    return lines


def publish(
    name: str,
    results: str | Path = "results",
    setting: str = "small",
    out: str | Path = DOCS / "results",
) -> Path:
    """Write ``out/<name>.md`` and its figure(s) from the records under ``results``."""
    exp = experiments.get(name)
    ids = exp.sweep(setting).job_ids()
    records = ResultStore(results, exp.name).records(ids)
    if not records:
        raise RunnerError(
            f"no records of {name} ({setting}) under {Path(results) / exp.name}; run "
            f"`python -m experiments.publish {name} --setting {setting} --run` first"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rep = exp.report(records, Path(tmp), setting) if exp.report else None
        figures = []
        for f in rep.files if rep else []:
            if f.suffix == ".png":
                _small_png(f, out / f.name)
                figures.append(f.name)
    claims_fn = getattr(_module(exp), "claims", None)
    claims = claims_fn(records) if claims_fn else {}
    counts = {v: sum(_verdict(c) == v for c in claims.values()) for v in VERDICT}
    title = (inspect.getdoc(_module(exp)) or exp.title).splitlines()[0].rstrip(".")
    timed = [float(r["cpu_seconds"]) for r in records if "cpu_seconds" in r]
    cpu = f"{sum(timed) / 60:.1f}" if timed else "n/a"  # records from before CPU was recorded
    seeds = len({int(r["seed"]) for r in records})
    meta = " ".join(f"{k}={v}" for k, v in counts.items())
    meta += f" seeds={seeds} jobs={len(records)} cpu_min={cpu}"
    lines = [f"<!-- {META} name={name} setting={setting} {meta} -->", f"# {title}", ""]
    if setting != "full":
        full = exp.settings["full"].runtime or "no estimate"
        why = WARNINGS.get(setting, WARNINGS["small"]).format(full=f"`full`: {full}", name=name)
        lines += [f'!!! warning "{setting.capitalize()} setting"', f"    {why}", ""]
    if len(records) < len(ids):
        lines += [
            '!!! danger "Incomplete sweep"',
            f"    Only {len(records)} of {len(ids)} jobs have records.",
            "",
        ]
    lines += [
        f"**The published claim it answers** — {_published_claim(exp)}",
        "",
        "## Verdicts",
        "",
        f"{counts['held']} held · {counts['inconclusive']} inconclusive · "
        f"{counts['failed']} did NOT hold (of {len(claims)} claims; setting `{setting}`, "
        f"{len(records)} jobs).",
        "",
        _claims_table(claims),
        "",
        STATS_NOTE,
        "",
        *_untested(claims),
        "## Figure",
        "",
        *(f"![{name} ({setting})]({f})" for f in figures),
        "",
        "## Results",
        "",
        rep.table if rep else "",
        "",
        "## Settings",
        "",
        *_settings(exp, setting),
        "",
        "## Runtime",
        "",
        *_runtime(records),
        "",
        "## Reproduce",
        "",
        "```bash",
        f"python -m experiments.publish {name} --setting {setting} --run   # run, then publish",
        f"symlab experiment report {name}{' --full' if setting == 'full' else ''}",
        "```",
        "",
        f"Generated by `experiments/publish.py` from the records of `{exp.run.__module__}` "
        f"(Python {platform.python_version()}).",
    ]
    page = out / f"{name}.md"
    page.write_text("\n".join(lines) + "\n")
    return page


def page_meta(page: Path) -> dict[str, str]:
    """The ``key=value`` pairs of a published page's first line (name, setting, verdict counts)."""
    first = page.read_text().split("\n", 1)[0]
    if not first.startswith(f"<!-- {META} "):
        raise RunnerError(f"{page} is not a page written by experiments/publish.py")
    return dict(item.split("=", 1) for item in first.removeprefix("<!-- ").split()[1:-1])


def update_index(pages: dict[str, Path], index: Path = DOCS / "experiments.md") -> None:
    """Rewrite the results table between the markers of ``docs/experiments.md``."""
    rows = []
    for name, page in pages.items():
        m = page_meta(page)
        verdicts = (
            f"{m['held']} held · {m['inconclusive']} inconclusive · {m['failed']} did NOT hold"
        )
        rel = page.relative_to(index.parent).as_posix()
        runs = f"{m.get('seeds', '?')} seeds, {m.get('jobs', '?')} jobs"
        runs += f", {m.get('cpu_min', '?')} CPU-min"
        rows.append(
            [f"[{name.upper()}]({rel})", experiments.get(name).paper, m["setting"], runs, verdicts]
        )
    header = ["", "published figure or claim", "setting", "seeds, jobs, CPU time", "verdicts"]
    table = markdown_table(header, rows)
    text = index.read_text()
    if INDEX_START not in text or INDEX_END not in text:
        raise RunnerError(f"{index} has no {INDEX_START} … {INDEX_END} markers")
    head, rest = text.split(INDEX_START, 1)
    tail = rest.split(INDEX_END, 1)[1]
    index.write_text(f"{head}{INDEX_START}\n{table}\n{INDEX_END}{tail}")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def main(
    names: Annotated[list[str] | None, typer.Argument(help="experiments (default: all)")] = None,
    results: Annotated[Path, typer.Option(help="results root folder")] = Path("results"),
    setting: Annotated[str, typer.Option(help="small, medium or full")] = "small",
    out: Annotated[Path, typer.Option(help="pages folder")] = DOCS / "results",
    run: Annotated[bool, typer.Option("--run", help="run (or resume) the sweeps first")] = False,
    workers: Annotated[int | None, typer.Option(help="local worker processes")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address")] = None,
) -> None:
    """Publish (optionally run first) the results of the experiments at one setting."""
    chosen = names or experiments.names()
    try:
        pages = {}
        for name in chosen:
            exp = experiments.get(name)
            if setting not in exp.settings:
                typer.echo(f"{name}: no {setting!r} setting, skipped", err=True)
                continue
            if run:
                summary = run_sweep(exp.sweep(setting), results, workers=workers,
                                    scheduler=scheduler, progress=None)  # fmt: skip
                typer.echo(f"{name} ({setting}): {summary.line()}", err=True)
            pages[name] = publish(name, results, setting, out)
            typer.echo(f"wrote {pages[name]}", err=True)
        if out.resolve() == (DOCS / "results").resolve():
            existing = {
                p.stem: p for p in sorted(out.glob("*.md")) if p.stem in experiments.MODULES
            }
            update_index({n: existing[n] for n in experiments.names() if n in existing})
    except RunnerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
