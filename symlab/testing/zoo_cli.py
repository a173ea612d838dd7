"""``symlab coverage``: the coverage census on the command line (registered in :mod:`symlab.cli`).

::

    symlab coverage                          # every installed family, every model (minutes)
    symlab coverage --family timm --limit 5  # five timm families
    symlab coverage --model bert --model llama --family "transformers: base model"
"""

from __future__ import annotations

from typing import Annotated

import typer

from symlab.testing.zoo_models import FAMILIES, installed_families, zoo_cases
from symlab.testing.zoo_report import ZooReport, run_case

__all__ = ["coverage"]


def coverage(
    family: Annotated[
        list[str] | None,
        typer.Option(
            "--family",
            "-f",
            help=f"a family to census (default: every installed one of {', '.join(FAMILIES)})",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="at most this many models per family, spread evenly")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="only models of these names")
    ] = None,
    samples: Annotated[int, typer.Option(help="group elements checked per model")] = 3,
    quiet: Annotated[bool, typer.Option(help="print the table only")] = False,
) -> None:
    """Census of real models (transformers, timm, torchvision, whichever is installed): which
    symlab derives and proves sound, which it refuses and why.
    \f
    >>> from typer.testing import CliRunner
    >>> app = typer.Typer(); _ = app.command()(coverage)
    >>> print(CliRunner().invoke(app, ["--family", "no such family"]).output.strip())
    no such family: not a census family, or its library is not installed; installed: ...
    """
    unknown = [f for f in family or [] if f not in installed_families()]
    if unknown:
        typer.echo(f"{', '.join(unknown)}: not a census family, or its library is not "
                   f"installed; installed: {installed_families()}")  # fmt: skip
        raise typer.Exit(2)
    report = ZooReport()
    for case in zoo_cases(family or None, limit, model or None):
        r = run_case(case, samples)
        report.results.append(r)
        if not quiet:
            typer.echo(f"{r.family} / {r.name}: {r.outcome} ({r.seconds:.1f} s) {r.detail[:160]}")
    typer.echo(report.table())
    if any(r.outcome in ("crash", "unsound") for r in report.results):
        raise typer.Exit(1)
